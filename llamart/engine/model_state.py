"""The loaded-model record: everything the Engine knows about the model it has loaded."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..bindings.base import Backend, ModelInfo
from ..errors import EngineStateError, logged_backend_errors
from ..gguf.model_files import check_adapter
from ..params import ModelParams
from .adapter_cache import AdapterCache
from .adapter_set import AdapterSet
from .engine_lock import EngineLock
from .scheduler import Scheduler

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
    lora_cache: AdapterCache = field(repr=False)  # adapters named by calls (lora=)
    scheduler: Scheduler | None = field(default=None, repr=False)  # n_parallel > 1
    default_lora: dict[str, float] = field(default_factory=dict)  # n_parallel > 1: set_lora

    @classmethod
    def load(cls, backend: Backend, path: str, header: Any, params: ModelParams,
             threads: int, lock: EngineLock) -> LoadedModel:
        """Load through ``backend`` (a BackendError propagates)."""
        info = backend.load_model(path, params, threads)
        scheduler = None
        if params.n_parallel > 1 and not params.vocab_only:
            scheduler = Scheduler(backend, params.n_parallel, lock,  # type: ignore[arg-type]
                                  params.prompt_cache_mb << 20, backend.token_to_piece,
                                  backend.capabilities.lora)
        cache = AdapterCache(backend, functools.partial(_check_applicable, header))
        return cls(info, header, params, threads, AdapterSet(backend), cache, scheduler)

    def require_weights(self, what: str) -> None:
        """EngineStateError if the model was loaded vocabulary-only."""
        if self.params.vocab_only:
            raise EngineStateError(
                f"cannot {what}: {self.info.path} was loaded vocabulary-only (vocab_only=True); "
                f"load it again without vocab_only to use its weights")

    def unload(self, backend: Backend) -> None:
        """Free the adapters and the model (best effort: failures are logged)."""
        if self.scheduler is not None:
            self.scheduler.stop()
        self.adapters.release()
        with logged_backend_errors("clearing adapters before unload failed"):
            if len(self.lora_cache) and backend.capabilities.lora:
                backend.apply_adapters([])
        self.lora_cache.close()
        with logged_backend_errors("unloading the model failed"):
            backend.unload_model()

    def reload(self, backend: Backend, scales: Mapping[str, float],
               lock: EngineLock) -> LoadedModel | None:
        """Best effort after a failed load: this model again, with the adapters ``scales``
        names. None (logged) if even that fails."""
        again = None
        with logged_backend_errors(f"could not reload the previous model {self.info.path}"):
            again = LoadedModel.load(backend, self.info.path, self.header, self.params,
                                     self.threads, lock)
        if again is not None:
            again.adapters.restore(scales)
        return again


def _check_applicable(header: Any, path: str) -> None:
    check_adapter(path, header, applicable=True)
