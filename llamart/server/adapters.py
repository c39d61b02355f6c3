"""The adapters a server offers, by name: which file and scale a request's model name and
``lora`` list select, runtime loading inside the allowed folder, and leases so that an
adapter a running request uses is never forgotten under it (unloading is deferred and
idempotent: Ray's multiplexing evicts, and may call ``__del__`` twice)."""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from ..gguf.model_files import check_adapter, check_model
from .config import AdapterSpec, ServerConfig
from .errors import APIError

__all__ = ["AdapterRegistry", "Selection"]


@dataclass(frozen=True)
class Selection:
    """What one request runs with: adapter names used and the {path: scale} set."""

    names: tuple[str, ...]
    loras: dict[str, float]


class AdapterRegistry:
    """Named adapters over one base model (thread-safe)."""

    def __init__(self, config: ServerConfig,
                 forget: Callable[[str], None] = lambda path: None) -> None:
        self._config = config
        self._lock = threading.Lock()
        self._specs: dict[str, AdapterSpec] = {a.name: a for a in config.adapters}
        self._users: dict[str, int] = {}  # adapter name -> requests running with it
        self._retired: dict[str, str] = {}  # unloaded/evicted while in use: name -> path
        self._forget = forget  # drops an adapter from the engine once nothing uses it
        self._base_header: Any = None

    def specs(self) -> list[AdapterSpec]:
        with self._lock:
            return list(self._specs.values())

    def get(self, name: str) -> AdapterSpec | None:
        with self._lock:
            return self._specs.get(name)

    def check_files(self) -> None:
        """Check every configured adapter against the base model (AdapterError naming it)."""
        for spec in self.specs():
            check_adapter(spec.path, self._base(), applicable=True)

    def _base(self) -> Any:
        if self._base_header is None:
            self._base_header = check_model(self._config.model)
        return self._base_header

    # ---- per request ----

    def select(self, model: str, lora: Sequence[Any] | None) -> Selection:
        """The adapter set of a request for ``model`` with the body's ``lora`` list
        (APIError 404 for an unknown model, 400 for an unknown adapter or bad scale)."""
        order: dict[str, float] = {}
        if model != self._config.model_name:
            spec = self.get(model)
            if spec is None:
                raise APIError(404, f"The model '{model}' does not exist", param="model",
                               code="model_not_found")
            order[spec.name] = spec.scale
        for i, ref in enumerate(lora or ()):
            spec = self.get(ref.name)
            if spec is None:
                raise APIError(400, f"lora.{i}.name: no adapter named {ref.name!r}",
                               param=f"lora.{i}.name", code="model_not_found")
            scale = spec.scale if ref.scale is None else ref.scale
            if not math.isfinite(scale):
                raise APIError(400, f"lora.{i}.scale must be finite", param=f"lora.{i}.scale")
            order[spec.name] = scale
        order = {n: s for n, s in order.items() if s != 0.0}  # scale 0: the base, exactly
        specs = {n: self._specs[n].path for n in order}
        return Selection(tuple(order), {specs[n]: s for n, s in order.items()})

    @contextmanager
    def lease(self, names: Sequence[str]) -> Iterator[None]:
        """Mark ``names`` in use for the block; an adapter retired meanwhile is forgotten
        by the engine when its last user finishes."""
        with self._lock:
            for n in names:
                self._users[n] = self._users.get(n, 0) + 1
        try:
            yield
        finally:
            done = []
            with self._lock:
                for n in names:
                    self._users[n] -= 1
                    if not self._users[n]:
                        del self._users[n]
                        if n in self._retired:
                            done.append(self._retired.pop(n))
            for path in done:
                self._forget(path)

    # ---- runtime loading (--allow-adapter-loading DIR) and Ray eviction ----

    def load(self, name: str, path: str, scale: float = 1.0) -> AdapterSpec:
        """Add adapter ``name`` from ``path`` (inside the allowed folder, fitting the base)."""
        folder = self._config.adapter_dir
        if folder is None:
            raise APIError(404, "runtime adapter loading is off (start the server with "
                                "--allow-adapter-loading DIR)", code="not_found")
        if name == self._config.model_name:
            raise APIError(400, f"lora_name {name!r} is the base model's name",
                           param="lora_name")
        root = os.path.realpath(folder)
        full = os.path.realpath(os.path.join(root, path))
        if os.path.commonpath([root, full]) != root:
            raise APIError(400, f"lora_path must be inside the adapter folder {folder}",
                           param="lora_path", code="path_not_allowed")
        if not math.isfinite(scale):
            raise APIError(400, "scale must be finite", param="scale")
        check_adapter(full, self._base(), applicable=True)  # AdapterError with the reason
        spec = AdapterSpec(name, full, scale)
        with self._lock:
            if name in self._specs:
                raise APIError(400, f"an adapter named {name!r} is already loaded",
                               param="lora_name", code="adapter_exists")
            self._specs[name] = spec
        return spec

    def unload(self, name: str) -> None:
        """Remove adapter ``name`` from the API (404 if unknown); deferred while in use."""
        if self._config.adapter_dir is None:
            raise APIError(404, "runtime adapter loading is off (start the server with "
                                "--allow-adapter-loading DIR)", code="not_found")
        if not self.retire(name, drop=True):
            raise APIError(404, f"no adapter named {name!r}", param="lora_name",
                           code="model_not_found")

    def retire(self, name: str, *, drop: bool = False) -> bool:
        """Let the engine forget ``name``'s adapter once no request uses it (idempotent;
        ``drop`` also removes the name from the API). False if the name is unknown."""
        with self._lock:
            spec = self._specs.pop(name, None) if drop else self._specs.get(name)
            if spec is None:
                return False
            if self._users.get(name):
                self._retired[name] = spec.path
                return True
        self._forget(spec.path)
        return True
