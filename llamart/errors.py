"""llamart's exception hierarchy, its warning, and the one place backend errors get a public type.

Every error llamart raises on purpose is a :class:`LlamartError` (or a built-in ``TypeError``,
``ValueError`` or ``FileNotFoundError`` for bad arguments). Errors about a file carry its
``path`` and the ``reason`` (llama.cpp's own message where it gave one) and read
``"<path>: <reason>"``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from .bindings.base import BackendError, ErrorKind

log = logging.getLogger("llamart")

__all__ = [
    "AdapterError",
    "ChatTemplateError",
    "ContextOverflowError",
    "EngineStateError",
    "GrammarError",
    "LlamartError",
    "LoraUnsupportedWarning",
    "ModelFetchError",
    "ModelLoadError",
    "UnsupportedCapabilityError",
    "backend_errors",
    "from_backend_error",
    "logged_backend_errors",
]


class LlamartError(Exception):
    """Base class of every llamart error; ``path`` and ``reason`` are set when known."""

    def __init__(self, message: str, *, path: str | None = None, reason: str | None = None):
        super().__init__(message)
        self.path = path
        self.reason = reason if reason is not None else message


class ModelLoadError(LlamartError):
    """A model file is invalid, or llama.cpp refused to load it."""


class AdapterError(LlamartError):
    """A LoRA adapter is invalid, does not fit the loaded model, or could not be applied."""


class EngineStateError(LlamartError):
    """The call is not allowed now: no model, engine disposed, or a generation is streaming."""


class ContextOverflowError(LlamartError):
    """The prompt does not fit the context window (raised before any work is done)."""


class UnsupportedCapabilityError(LlamartError):
    """The backend lacks a capability (e.g. LoRA on WebAssembly) and the engine is strict."""


class GrammarError(LlamartError, ValueError):
    """A GBNF grammar does not parse (or llama.cpp refuses it), a JSON schema uses a feature the
    converter does not support, or no token of the model's vocabulary can continue the grammar;
    the message gives llama.cpp's reason."""


class LoraUnsupportedWarning(UserWarning):
    """A LoRA call was a no-op because this backend does not apply adapters."""


def _message(path: str | None, reason: str) -> str:
    return f"{path}: {reason}" if path else reason


def from_backend_error(err: BackendError, *, op: str, path: str | None = None) -> LlamartError:
    """The public exception for a backend failure during operation ``op``.

    ``op`` is ``"model"`` (loading a model), ``"adapter"`` (loading or applying adapters) or
    anything else (evaluation, text). The kind decides first: context -> ContextOverflowError,
    state -> EngineStateError, unsupported -> UnsupportedCapabilityError, grammar ->
    GrammarError; otherwise adapter
    operations give AdapterError, model loads (or kind "load") ModelLoadError, the rest
    LlamartError. The caller raises the result ``from err``.
    """
    reason = err.reason or str(err) or f"backend call failed ({err.kind})"
    msg = _message(path, reason)
    cls: type[LlamartError]
    if err.kind == ErrorKind.CONTEXT:
        cls = ContextOverflowError
    elif err.kind == ErrorKind.STATE:
        cls = EngineStateError
    elif err.kind == ErrorKind.UNSUPPORTED:
        cls = UnsupportedCapabilityError
    elif err.kind == ErrorKind.GRAMMAR:
        cls = GrammarError
    elif op == "adapter":
        cls = AdapterError
    elif op == "model" or err.kind == ErrorKind.LOAD:
        cls = ModelLoadError
    else:
        cls = LlamartError
    return cls(msg, path=path, reason=reason)


@contextlib.contextmanager
def backend_errors(op: str, path: str | None = None) -> Iterator[None]:
    """Raise a BackendError from the block as its public exception (:func:`from_backend_error`)."""
    try:
        yield
    except BackendError as e:
        raise from_backend_error(e, op=op, path=path) from e


@contextlib.contextmanager
def logged_backend_errors(what: str) -> Iterator[None]:
    """Best-effort cleanup: a BackendError from the block is logged (``"<what>: <reason>"``),
    not raised; the block stops where it failed."""
    try:
        yield
    except BackendError as e:
        log.warning("%s: %s", what, e.reason)


class ModelFetchError(LlamartError):
    """A pinned model could not be fetched (pip failed) or its download is corrupt (deleted)."""


class ChatTemplateError(LlamartError):
    """A chat template failed to compile or render; the message names the template and line.

    ``template`` is the template's name (usually the model's), ``lineno`` the template line when
    known.
    """

    def __init__(self, message: str, *, template: str = "<template>", lineno: int | None = None,
                 reason: str | None = None):
        super().__init__(message, path=None, reason=reason)
        self.template = template
        self.lineno = lineno
