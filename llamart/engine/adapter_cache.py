"""Adapters named by calls (``lora={path: scale}``), loaded once and kept, like vLLM's
``max_loras``: at most ``max_loaded`` handles stay loaded; the least recently used one that no
running request (and not the engine's default set) uses is freed to make room, never one in use.
"""

from __future__ import annotations

import math
import os
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

from ..bindings.base import Backend
from ..errors import backend_errors, logged_backend_errors
from .inputs import fspath

__all__ = ["AdapterCache", "check_lora_arg"]

MAX_LOADED = 8


def check_lora_arg(lora: Any) -> dict[str, float] | None:
    """``lora=`` of a call: None, or a mapping of adapter path to finite scale (a copy)."""
    if lora is None:
        return None
    if not isinstance(lora, Mapping):
        raise TypeError(f"lora must be a mapping of adapter path to scale (or None), "
                        f"not {type(lora).__name__}")
    out: dict[str, float] = {}
    for path, scale in lora.items():
        p = fspath("lora key", path)
        if isinstance(scale, bool) or not isinstance(scale, (int, float)):
            raise TypeError(f"lora[{p!r}] must be a number, not {type(scale).__name__}")
        if not math.isfinite(float(scale)):
            raise ValueError(f"lora[{p!r}] must be finite, got {scale!r}")
        out[p] = float(scale)
    return out


class AdapterCache:
    """Loaded adapter handles by path, reference-counted by the requests using them."""

    def __init__(self, backend: Backend, check: Callable[[str], object],
                 max_loaded: int = MAX_LOADED) -> None:
        self._backend = backend
        self._check = check  # raises when the file is no adapter for the loaded model
        self.max_loaded = max_loaded
        self._handles: OrderedDict[str, Any] = OrderedDict()
        self._users: dict[str, int] = {}

    def __contains__(self, path: object) -> bool:
        return path in self._handles

    def __len__(self) -> int:
        return len(self._handles)

    def in_use(self) -> dict[str, int]:
        """The adapters running requests hold, with their number of users."""
        return dict(self._users)

    def acquire(self, lora: Mapping[str, float]) -> list[tuple[Any, float]]:
        """Handles of ``lora`` (loading what is missing), each used once more until
        :meth:`release`. On failure nothing stays acquired."""
        got: list[str] = []
        try:
            out = []
            for path, scale in lora.items():
                out.append((self._get(path), scale))
                self._users[path] = self._users.get(path, 0) + 1
                got.append(path)
            return out
        except BaseException:
            self.release(got)
            raise

    def release(self, paths: Any) -> None:
        for path in paths:
            n = self._users.get(path, 0) - 1
            if n <= 0:
                self._users.pop(path, None)
            else:
                self._users[path] = n
        self._trim()

    def _get(self, path: str) -> Any:
        handle = self._handles.get(path)
        if handle is not None:
            self._handles.move_to_end(path)
            return handle
        if not os.path.exists(path):
            raise FileNotFoundError(f"LoRA adapter not found: {path}")
        self._check(path)
        with backend_errors("adapter", path):
            handle = self._backend.load_adapter(path)
        self._handles[path] = handle
        self._trim()
        return handle

    def _trim(self) -> None:
        for path in list(self._handles):
            if len(self._handles) <= self.max_loaded:
                return
            if not self._users.get(path):
                self._free(path)

    def _free(self, path: str) -> None:
        handle = self._handles.pop(path)
        with logged_backend_errors(f"freeing adapter {path} failed"):
            self._backend.free_adapter(handle)

    def close(self) -> None:
        """Free every handle (before the model is unloaded)."""
        for path in list(self._handles):
            self._free(path)
        self._users.clear()
