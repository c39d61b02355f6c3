"""The loaded-model record: everything the Engine knows about the model it has loaded."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .adapter_set import AdapterSet
from .backends.base import Backend, ModelInfo
from .errors import EngineStateError, logged_backend_errors
from .params import ModelParams

__all__ = ["LoadedModel"]


@dataclass(eq=False)
class LoadedModel:
    """One load of one model. A new record is made for every load (also a reload after a
    failed load), so its identity tells a pending generation whether the model changed."""

    info: ModelInfo
    header: Any  # the GGUF header, checked in Python before the load
    params: ModelParams
    threads: int
    adapters: AdapterSet = field(repr=False)

    @classmethod
    def load(cls, backend: Backend, path: str, header: Any, params: ModelParams,
             threads: int) -> LoadedModel:
        """Load through ``backend`` (a BackendError propagates)."""
        info = backend.load_model(path, params, threads)
        return cls(info, header, params, threads, AdapterSet(backend))

    def require_weights(self, what: str) -> None:
        """EngineStateError if the model was loaded vocabulary-only."""
        if self.params.vocab_only:
            raise EngineStateError(
                f"cannot {what}: {self.info.path} was loaded vocabulary-only (vocab_only=True); "
                f"load it again without vocab_only to use its weights")

    def unload(self, backend: Backend) -> None:
        """Free the adapters and the model (best effort: failures are logged)."""
        self.adapters.release()
        with logged_backend_errors("unloading the model failed"):
            backend.unload_model()

    def reload(self, backend: Backend, scales: Mapping[str, float]) -> LoadedModel | None:
        """Best effort after a failed load: this model again, with the adapters ``scales``
        names. None (logged) if even that fails."""
        again = None
        with logged_backend_errors(f"could not reload the previous model {self.info.path}"):
            again = LoadedModel.load(backend, self.info.path, self.header, self.params,
                                     self.threads)
        if again is not None:
            again.adapters.restore(scales)
        return again
