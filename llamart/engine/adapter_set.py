"""The LoRA adapters applied to the loaded model: path -> (backend handle, scale), in order.

Every change is planned first (the set it would make), applied to the backend, then committed
(handles no longer used are freed) or rolled back (the backend gets the current set again and a
handle loaded for the change is freed). Paths are keys as the caller spelt them; a new scale
for a known path keeps its place.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, NamedTuple

from ..bindings.base import Backend, Capabilities
from ..errors import (
    LoraUnsupportedWarning,
    UnsupportedCapabilityError,
    backend_errors,
    logged_backend_errors,
)
from ..gguf.model_files import adapter_summary, check_adapter, file_metadata

if TYPE_CHECKING:
    from .model_state import LoadedModel

__all__ = ["AdapterPlan", "AdapterSet", "lora_metadata", "lora_unavailable"]


def lora_unavailable(caps: Capabilities, strict: bool, op: str) -> bool:
    """True if ``caps`` has no LoRA: then a LoraUnsupportedWarning pointing at the caller of
    the Engine method ``op`` is issued, or (``strict``) UnsupportedCapabilityError raised."""
    if caps.lora:
        return False
    reason = caps.lora_reason or f"LoRA adapters are not applied on the {caps.backend} backend"
    if strict:
        raise UnsupportedCapabilityError(f"{op}: {reason}", reason=reason)
    warnings.warn(LoraUnsupportedWarning(reason), stacklevel=3)
    return True


def lora_metadata(path: str, guard: AbstractContextManager[LoadedModel | None]) -> dict[str, Any]:
    """``Engine.lora_metadata``: the file's summary and metadata, and (read inside ``guard``,
    which yields the loaded model or None) the loaded adapter's state."""
    with guard as model, backend_errors("adapter", path):
        header = check_adapter(path, None)
        out = {**adapter_summary(header), "path": path, "loaded": False, "scale": None,
               "metadata": file_metadata(header)}
        if model is not None:
            out.update(model.adapters.describe(path))
        return out


class AdapterPlan(NamedTuple):
    """A change to an AdapterSet, not applied yet."""

    entries: dict[str, tuple[Any, float]]  # the whole set after the change
    added: Any  # a handle loaded for this change (freed on rollback), or None
    dropped: tuple[Any, ...]  # handles the change stops using (freed on commit)


class AdapterSet:
    """The adapters one loaded model has (see the module docstring)."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self._entries: dict[str, tuple[Any, float]] = {}

    def __contains__(self, path: object) -> bool:
        return path in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def scales(self) -> dict[str, float]:
        """{path: scale}, in the order the adapters were first set (a copy)."""
        return {p: s for p, (_h, s) in self._entries.items()}

    def describe(self, path: str) -> dict[str, Any]:
        """``loaded``, ``scale`` and (when loaded) the backend's ``metadata`` of ``path``."""
        if path not in self._entries:
            return {"loaded": False, "scale": None}
        handle, scale = self._entries[path]
        return {"loaded": True, "scale": scale,
                "metadata": dict(self._backend.adapter_metadata(handle))}

    # ---- planning ----

    def plan_set(self, path: str, scale: float, check: Callable[[], object]) -> AdapterPlan:
        """Set ``path`` to ``scale``: a known path keeps its handle; a new one is checked
        (``check()`` raises if the file does not fit) and loaded, and freed on rollback."""
        entries = dict(self._entries)
        if path in entries:
            entries[path] = (entries[path][0], scale)
            return AdapterPlan(entries, None, ())
        check()
        handle = self._backend.load_adapter(path)
        entries[path] = (handle, scale)
        return AdapterPlan(entries, handle, ())

    def plan_remove(self, path: str) -> AdapterPlan:
        entries = dict(self._entries)
        handle, _scale = entries.pop(path)
        return AdapterPlan(entries, None, (handle,))

    def plan_clear(self) -> AdapterPlan:
        return AdapterPlan({}, None, tuple(h for h, _s in self._entries.values()))

    # ---- changing (plan, apply; backend errors mapped to AdapterError etc.) ----

    def set_scale(self, path: str, scale: float, check: Callable[[], object]) -> None:
        """Apply ``path`` at ``scale`` (:meth:`plan_set`, then :meth:`apply`)."""
        with backend_errors("adapter", path):
            self.apply(self.plan_set(path, scale, check))

    def remove(self, path: str) -> bool:
        """Stop applying ``path`` and free it; False (a no-op) if it is not set."""
        if path not in self._entries:
            return False
        with backend_errors("adapter", path):
            self.apply(self.plan_remove(path))
        return True

    def clear(self) -> None:
        """Stop applying every adapter and free them."""
        if self._entries:
            with backend_errors("adapter"):
                self.apply(self.plan_clear())

    # ---- applying ----

    def apply(self, plan: AdapterPlan) -> None:
        """Make ``plan`` the backend's active set and commit it; on any failure roll back and
        re-raise (the BackendError, for the caller to map)."""
        try:
            self._backend.apply_adapters(list(plan.entries.values()))
        except BaseException:
            self.rollback(plan)
            raise
        self.commit(plan)

    def commit(self, plan: AdapterPlan) -> None:
        self._entries = plan.entries
        for handle in plan.dropped:
            self._free(handle)

    def rollback(self, plan: AdapterPlan) -> None:
        """Put the current set back on the backend (best effort); free the plan's new handle."""
        with logged_backend_errors("could not restore the previous adapter set"):
            self._backend.apply_adapters(list(self._entries.values()))
        if plan.added is not None:
            self._free(plan.added)

    def reapply(self, backend: Backend) -> None:
        """Make this set the backend's active one again (after a call applied its own)."""
        backend.apply_adapters(list(self._entries.values()))

    def release(self) -> None:
        """Before the model is unloaded: detach and free every adapter (best effort)."""
        handles = [h for h, _s in self._entries.values()]
        self._entries = {}
        if not handles:
            return
        with logged_backend_errors("clearing adapters before unload failed"):
            self._backend.apply_adapters([])
        for handle in handles:
            self._free(handle)

    def restore(self, scales: Mapping[str, float]) -> None:
        """After a model was loaded again: load and apply ``scales`` (best effort: an adapter
        that fails to load is left out, and logged)."""
        for path, scale in scales.items():
            with logged_backend_errors(f"could not reload adapter {path}"):
                self._entries[path] = (self._backend.load_adapter(path), scale)
        if self._entries:
            with logged_backend_errors("could not re-apply adapters"):
                self._backend.apply_adapters(list(self._entries.values()))

    def _free(self, handle: Any) -> None:
        with logged_backend_errors("freeing an adapter failed"):
            self._backend.free_adapter(handle)
