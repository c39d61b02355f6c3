"""The Engine: the public face of llamart, the same on every backend.

The Engine checks arguments and state once, keeps the LoRA bookkeeping, maps backend failures to
public exceptions and serialises calls; a :class:`~llamart.backends.base.Backend` only runs
llama.cpp. Decisions worth knowing (also in the README):

* Adapters are keyed by ``os.fspath(path)``, the string the caller passed: the same file
  spelt two ways counts as two adapters. ``loras`` keeps the order adapters were first set;
  a new scale for a known path keeps its place and does not read the file again.
* ``remove_lora`` of a path that is not set is a no-op returning ``False``.
* ``last_finish_reason`` after a generation: ``"stop"`` (end-of-generation token or a stop
  string), ``"length"`` (``max_tokens`` reached), ``"context"`` (the context window is full),
  ``"cancelled"`` (``cancel()``, the iterator closed early, or KeyboardInterrupt) or
  ``"error"`` (an exception ended it).
* One generation at a time: while one is streaming, calls that would disturb it (load, unload,
  LoRA changes, another generation, logits) raise EngineStateError from any thread; reading
  calls (tokenize, metadata, ...) wait for the current token and run. ``dispose()`` always
  works: it ends a suspended generation, whose next step then raises EngineStateError.
"""

from __future__ import annotations

import array
import codecs
import contextlib
import errno
import importlib
import logging
import numbers
import os
import random
import struct
import sys
import threading
import time
import warnings
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any

from .backends.base import Backend, BackendError, Capabilities, ModelInfo, StepEnd
from .errors import (
    AdapterError,
    ContextOverflowError,
    EngineStateError,
    LlamartError,
    LoraUnsupportedWarning,
    ModelLoadError,
    UnsupportedCapabilityError,
    from_backend_error,
)
from .params import (
    GenerationParams,
    ModelParams,
    check_bool,
    check_float,
    check_generation_params,
    check_model_params,
    merge_params,
)

__all__ = ["Engine", "FINISH_REASONS", "default_backend_name", "default_threads"]

log = logging.getLogger("llamart")

FINISH_REASONS = ("stop", "length", "context", "cancelled", "error")
_BACKENDS = {
    "native": ("llamart.backends.native", "NativeBackend"),
    "wasm": ("llamart.backends.wasm", "WasmBackend"),
}
_THREADS_AVAILABLE = sys.platform != "emscripten"  # Pyodide cannot start Python threads
_DONE = object()


def default_backend_name() -> str:
    """``"wasm"`` inside Pyodide (``sys.platform == "emscripten"``), else ``"native"``."""
    return "wasm" if sys.platform == "emscripten" else "native"


def default_threads() -> int:
    """The number of CPU cores this process may run on (1 in WebAssembly)."""
    if sys.platform == "emscripten":
        return 1
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    return max(1, n)


def _resolve_backend(backend: str | Backend | None) -> Backend:
    if backend is None:
        backend = default_backend_name()
    if isinstance(backend, str):
        if backend not in _BACKENDS:
            raise ValueError(f"backend must be one of {sorted(_BACKENDS)} or a Backend "
                             f"instance, got {backend!r}")
        module_name, class_name = _BACKENDS[backend]
        try:
            cls = getattr(importlib.import_module(module_name), class_name)
            return cls()
        except (ImportError, OSError) as e:
            raise LlamartError(f"the {backend} backend is not available: {e}") from e
    if isinstance(backend, Backend):
        return backend
    raise TypeError(f"backend must be a str, a Backend or None, not {type(backend).__name__}")


def _fspath(name: str, value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, os.PathLike):
        p = os.fspath(value)
        if isinstance(p, str):
            return p
    raise TypeError(f"{name} must be a str or os.PathLike, not {type(value).__name__}")


def _check_file(path: str) -> None:
    if not os.path.exists(path):
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", path)
    if os.path.isdir(path):
        raise IsADirectoryError(errno.EISDIR, "Is a directory, not a GGUF file", path)


def _is_token_seq(value: Any) -> bool:
    return (not isinstance(value, (str, bytes, bytearray, Mapping))
            and hasattr(value, "__iter__") and hasattr(value, "__len__"))


def _check_tokens(tokens: Any, n_vocab: int) -> list[int]:
    if not _is_token_seq(tokens):
        raise TypeError(f"tokens must be a sequence of int, not {type(tokens).__name__}")
    out = []
    for i, t in enumerate(tokens):
        if isinstance(t, bool) or not isinstance(t, numbers.Integral):
            raise TypeError(f"tokens[{i}] must be an int, not {type(t).__name__}")
        if not 0 <= t < n_vocab:
            raise ValueError(f"tokens[{i}] = {t} is outside the vocabulary (0..{n_vocab - 1})")
        out.append(int(t))
    return out


def _check_messages(messages: Any) -> list[tuple[str, str]]:
    if isinstance(messages, (str, bytes, Mapping)) or not isinstance(messages, Sequence):
        raise TypeError(f"messages must be a list of {{'role': ..., 'content': ...}} dicts, "
                        f"not {type(messages).__name__}")
    if not messages:
        raise ValueError("messages is empty")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping):
            raise TypeError(f"messages[{i}] must be a dict, not {type(m).__name__}")
        for key in ("role", "content"):
            if key not in m:
                raise ValueError(f"messages[{i}] has no '{key}'")
            if not isinstance(m[key], str):
                raise TypeError(f"messages[{i}]['{key}'] must be a str, "
                                f"not {type(m[key]).__name__}")
        if not m["role"]:
            raise ValueError(f"messages[{i}]['role'] is empty")
        out.append((m["role"], m["content"]))
    return out


def _kv_text(value: object) -> str:
    if isinstance(value, list):
        return f"[{len(value)} items]"
    return str(value)


STEP_BUDGET_S = 0.05  # generation steps (tokens per C call) grow up to about this long
MAX_STEP = 32


def _next_step(elapsed: float, n: int) -> int:
    """Tokens to ask for in the next step: as many as fit the time budget at the last pace.

    Each step is one crossing into C (one JavaScript call in Pyodide); tokens still stream one
    by one to the caller, and a cancel request stops a step before its next token.
    """
    if n <= 0 or elapsed <= 0:
        return MAX_STEP if n > 0 else 1
    return max(1, min(MAX_STEP, int(STEP_BUDGET_S * n / elapsed)))


class _StopMatcher:
    """Cuts streamed text at the first stop string, holding back what could start one."""

    def __init__(self, stops: tuple[str, ...]) -> None:
        self.stops = stops
        self.max_hold = max((len(s) for s in stops), default=1) - 1
        self.by_first: dict[str, list[str]] = {}
        for s in stops:
            self.by_first.setdefault(s[0], []).append(s)
        self.held = ""

    def feed(self, text: str, final: bool = False) -> tuple[str, bool]:
        """Text safe to emit now, and whether a stop string was found (text cut before it)."""
        buf = self.held + text
        self.held = ""
        if not self.stops or not buf:
            return buf, False
        found = [i for i in (buf.find(s) for s in self.stops) if i >= 0]
        if found:
            return buf[:min(found)], True
        if final:
            return buf, False
        for j in range(max(0, len(buf) - self.max_hold), len(buf)):
            tail = buf[j:]
            if any(s.startswith(tail) for s in self.by_first.get(buf[j], ())):
                self.held = tail
                return buf[:j], False
        return buf, False


class Engine:
    """Load a GGUF model, generate text, and manage LoRA adapters on any backend.

    ``Engine()`` picks the backend for the platform; ``Engine("native")`` or
    ``Engine("wasm")`` names one; a :class:`~llamart.backends.base.Backend` instance is used
    as is. With ``strict=True``, LoRA calls on a backend without LoRA raise
    UnsupportedCapabilityError instead of warning and doing nothing.
    """

    def __init__(self, backend: str | Backend | None = None, *, strict: bool = False) -> None:
        self._strict = check_bool("strict", strict)
        self._backend = _resolve_backend(backend)
        self._lock = threading.RLock()
        self._disposed = False
        self._info: ModelInfo | None = None
        self._header: Any = None  # gguf.GGUFHeader of the loaded model
        self._model_params: ModelParams | None = None
        self._n_threads = 0
        self._epoch = 0  # bumped on every load/unload: a pending generate() sees the change
        self._loras: dict[str, float] = {}
        self._handles: dict[str, Any] = {}
        self._generation: object | None = None  # token of the generation streaming now
        self._cancelled: object | None = None  # the generation cancel() was called for
        self.last_finish_reason: str | None = None
        self.last_usage: dict[str, int] | None = None

    # ---- state helpers ----

    def _check_open(self) -> None:
        if self._disposed:
            raise EngineStateError("the engine has been disposed; create a new Engine")

    def _check_idle(self, what: str) -> None:
        if self._generation is not None:
            raise EngineStateError(f"cannot {what} while a generation is streaming; finish, "
                                   f"close or cancel it first")

    def _require_model(self, what: str) -> None:
        if self._info is None:
            raise EngineStateError(f"no model is loaded: call load_model() before {what}")

    @contextlib.contextmanager
    def _call(self, what: str, *, idle: bool = True, model: bool = False) -> Iterator[None]:
        self._check_open()
        if idle:
            self._check_idle(what)  # refuse at once, without waiting for a running token
        with self._lock:
            self._check_open()
            if idle:
                self._check_idle(what)
            if model:
                self._require_model(what)
            yield

    # ---- properties ----

    @property
    def capabilities(self) -> Capabilities:
        """What the backend can do (no model needed)."""
        return self._backend.capabilities

    @property
    def strict(self) -> bool:
        return self._strict

    @property
    def model_info(self) -> ModelInfo | None:
        """Facts about the loaded model, or None when no model is loaded."""
        self._check_open()
        return self._info

    @property
    def metadata(self) -> dict[str, str]:
        """The loaded model's GGUF metadata (a copy)."""
        with self._call("read metadata", idle=False, model=True):
            assert self._info is not None
            return dict(self._info.metadata)

    @property
    def loras(self) -> dict[str, float]:
        """{path: scale} of the adapters applied now, in the order they were first set."""
        return dict(self._loras)

    @property
    def disposed(self) -> bool:
        return self._disposed

    def __repr__(self) -> str:
        model = self._info.path if self._info else None
        state = "disposed" if self._disposed else f"model={model!r} loras={len(self._loras)}"
        return f"<Engine backend={self._backend.name!r} {state}>"

    # ---- lifecycle ----

    def __enter__(self) -> Engine:
        self._check_open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.dispose()

    def load_model(self, path: str | os.PathLike[str], n_ctx: int | ModelParams = 2048,
                   n_batch: int = 512, n_threads: int | None = None, *, use_mmap: bool = True,
                   params: ModelParams | None = None) -> ModelInfo:
        """Load a GGUF model (unloading the current one first) and return its facts.

        The file is checked in Python (existence, GGUF structure) before llama.cpp sees it.
        A ModelParams may be passed as ``params`` or in place of ``n_ctx``.
        """
        if isinstance(n_ctx, ModelParams):
            if params is not None:
                raise TypeError("pass a ModelParams once, as params= or as the second argument")
            params, n_ctx = n_ctx, 2048
        given = {"n_ctx": n_ctx, "n_batch": n_batch, "n_threads": n_threads,
                 "use_mmap": use_mmap}
        mp = check_model_params(merge_params(params, ModelParams, given))
        spath = _fspath("path", path)
        threads = mp.n_threads if mp.n_threads is not None else default_threads()
        with self._call("load a model"):
            _check_file(spath)
            header = self._validate_model(spath)
            previous = self._snapshot()
            if self._info is not None:
                self._unload_locked()
            try:
                info = self._backend.load_model(spath, mp, threads)
            except BackendError as e:
                self._restore(previous)
                raise from_backend_error(e, op="model", path=spath) from e
            self._info, self._header = info, header
            self._model_params, self._n_threads = mp, threads
            self._epoch += 1
            return info

    def unload_model(self) -> None:
        """Free the adapters, context and model (no-op without a model); ``loras`` becomes {}."""
        with self._call("unload the model"):
            if self._info is not None:
                self._unload_locked()

    def dispose(self) -> None:
        """Release everything the backend holds. Idempotent; the engine is unusable after."""
        if self._disposed:
            return
        with self._lock:
            if self._disposed:
                return
            self._generation = None  # a suspended generation raises on its next step
            try:
                if self._info is not None:
                    self._unload_locked()
            finally:
                self._disposed = True
                try:
                    self._backend.dispose()
                except BackendError as e:
                    log.warning("backend dispose failed: %s", e.reason)

    def _unload_locked(self) -> None:
        handles = list(self._handles.values())
        self._loras.clear()
        self._handles.clear()
        try:
            if handles:
                try:
                    self._backend.apply_adapters([])
                except BackendError as e:
                    log.warning("clearing adapters before unload failed: %s", e.reason)
                for h in handles:
                    self._free_handle(h)
            self._backend.unload_model()
        except BackendError as e:
            log.warning("unloading the model failed: %s", e.reason)
        finally:
            self._info = self._header = self._model_params = None
            self._epoch += 1

    def _snapshot(self) -> tuple[Any, ...] | None:
        if self._info is None:
            return None
        return (self._info.path, self._model_params, self._n_threads, self._header,
                dict(self._loras))

    def _restore(self, snap: tuple[Any, ...] | None) -> None:
        """Best effort after a failed load: bring back the previous model and its adapters."""
        if snap is None:
            return
        path, mp, threads, header, loras = snap
        try:
            info = self._backend.load_model(path, mp, threads)
        except BackendError as e:
            log.warning("could not reload the previous model %s: %s", path, e.reason)
            return
        self._info, self._header, self._model_params, self._n_threads = info, header, mp, threads
        self._epoch += 1
        for p, scale in loras.items():
            try:
                self._handles[p] = self._backend.load_adapter(p)
                self._loras[p] = scale
            except BackendError as e:
                log.warning("could not reload adapter %s: %s", p, e.reason)
        if self._handles:
            try:
                self._backend.apply_adapters([(self._handles[p], s)
                                              for p, s in self._loras.items()])
            except BackendError as e:
                log.warning("could not re-apply adapters: %s", e.reason)

    def _validate_model(self, path: str) -> Any:
        from . import gguf
        from .c_scan import c_string_scan

        try:
            return gguf.validate_model(path, scan=c_string_scan())
        except gguf.GGUFError as e:
            raise ModelLoadError(f"{path}: {e.reason}", path=path, reason=e.reason) from e
        except (ValueError, OverflowError, struct.error, EOFError) as e:
            reason = f"unreadable GGUF header ({e})"
            raise ModelLoadError(f"{path}: {reason}", path=path, reason=reason) from e

    def _validate_adapter(self, path: str, base: Any) -> Any:
        from . import gguf

        try:
            return gguf.validate_adapter(path, base)
        except gguf.GGUFError as e:
            raise AdapterError(f"{path}: {e.reason}", path=path, reason=e.reason) from e
        except (ValueError, OverflowError, struct.error, EOFError) as e:
            reason = f"unreadable GGUF header ({e})"
            raise AdapterError(f"{path}: {reason}", path=path, reason=reason) from e

    # ---- LoRA ----

    def _lora_unsupported(self, op: str) -> bool:
        """True (after warning, or raising when strict) if this backend cannot apply LoRA."""
        caps = self.capabilities
        if caps.lora:
            return False
        reason = caps.lora_reason or f"LoRA adapters are not applied on the {caps.backend} backend"
        if self._strict:
            raise UnsupportedCapabilityError(f"{op}: {reason}", reason=reason)
        warnings.warn(LoraUnsupportedWarning(reason), stacklevel=3)
        return True

    def _apply(self, loras: Mapping[str, float], handles: Mapping[str, Any],
               path: str | None) -> None:
        """Make ``loras`` the backend's active set; on failure put the current set back."""
        try:
            self._backend.apply_adapters([(handles[p], s) for p, s in loras.items()])
        except BackendError as e:
            try:
                self._backend.apply_adapters([(self._handles[p], s)
                                              for p, s in self._loras.items()])
            except BackendError as e2:
                log.warning("could not restore the previous adapter set: %s", e2.reason)
            raise from_backend_error(e, op="adapter", path=path) from e

    def _free_handle(self, handle: Any) -> None:
        try:
            self._backend.free_adapter(handle)
        except BackendError as e:
            log.warning("freeing an adapter failed: %s", e.reason)

    def set_lora(self, path: str | os.PathLike[str], scale: float = 1.0) -> bool:
        """Apply a LoRA adapter at ``scale`` (any finite number; 0 keeps it with no effect).

        A new path is read and loaded once; a known path only gets its new scale. Adapters
        stack. Returns True when applied, False when this backend cannot apply adapters (a
        LoraUnsupportedWarning is issued, or UnsupportedCapabilityError raised when strict).
        """
        self._check_open()
        spath = _fspath("path", path)
        fscale = check_float("scale", scale)
        if self._lora_unsupported("set_lora"):
            return False
        with self._call("change LoRA adapters", model=True):
            new = dict(self._loras)
            new[spath] = fscale
            if spath in self._handles:
                self._apply(new, self._handles, spath)
                self._loras = new
                return True
            _check_file(spath)
            self._validate_adapter(spath, self._header)
            try:
                handle = self._backend.load_adapter(spath)
            except BackendError as e:
                raise from_backend_error(e, op="adapter", path=spath) from e
            handles = dict(self._handles)
            handles[spath] = handle
            try:
                self._apply(new, handles, spath)
            except BaseException:
                self._free_handle(handle)
                raise
            self._loras, self._handles = new, handles
            return True

    def remove_lora(self, path: str | os.PathLike[str]) -> bool:
        """Stop applying one adapter and free it. True if it was set; False for an unknown
        path (a no-op) or on a backend without LoRA."""
        self._check_open()
        spath = _fspath("path", path)
        if self._lora_unsupported("remove_lora"):
            return False
        with self._call("change LoRA adapters"):
            if spath not in self._handles:
                return False
            new = {p: s for p, s in self._loras.items() if p != spath}
            self._apply(new, self._handles, spath)
            handle = self._handles.pop(spath)
            self._loras = new
            self._free_handle(handle)
            return True

    def clear_loras(self) -> None:
        """Stop applying every adapter and free them: the base model again."""
        self._check_open()
        if self._lora_unsupported("clear_loras"):
            return
        with self._call("change LoRA adapters"):
            if not self._handles:
                return
            self._apply({}, {}, None)
            handles = list(self._handles.values())
            self._loras, self._handles = {}, {}
            for h in handles:
                self._free_handle(h)

    def lora_metadata(self, path: str | os.PathLike[str]) -> dict[str, Any]:
        """An adapter file's alpha, rank, targets, task_name and architecture, plus
        ``loaded``, ``scale`` and ``metadata`` (the backend's view when loaded, else the
        file's keys). Works for any adapter file, loaded or not, on every backend."""
        from . import gguf

        spath = _fspath("path", path)
        with self._call("read adapter metadata", idle=False):
            _check_file(spath)
            header = self._validate_adapter(spath, None)
            out: dict[str, Any] = dict(gguf.adapter_summary(header))
            out["path"] = spath
            out["loaded"] = spath in self._handles
            out["scale"] = self._loras.get(spath)
            if spath in self._handles:
                try:
                    meta = dict(self._backend.adapter_metadata(self._handles[spath]))
                except BackendError as e:
                    raise from_backend_error(e, op="adapter", path=spath) from e
            else:
                meta = {k: _kv_text(v) for k, v in header.kv.items()}
            out["metadata"] = meta
            return out

    # ---- text ----

    def tokenize(self, text: str, add_special: bool = True,
                 parse_special: bool = False) -> list[int]:
        """The model's tokens for ``text`` (BOS etc. added when ``add_special``)."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, not {type(text).__name__}")
        check_bool("add_special", add_special)
        check_bool("parse_special", parse_special)
        with self._call("tokenize", idle=False, model=True):
            return self._tokenize(text, add_special, parse_special)

    def _tokenize(self, text: str, add_special: bool, parse_special: bool) -> list[int]:
        try:
            return list(self._backend.tokenize(text, add_special, parse_special))
        except BackendError as e:
            raise from_backend_error(e, op="text") from e

    def detokenize(self, tokens: Sequence[int]) -> str:
        """The text of ``tokens`` (invalid UTF-8 becomes U+FFFD)."""
        with self._call("detokenize", idle=False, model=True):
            assert self._info is not None
            toks = _check_tokens(tokens, self._info.n_vocab)
            try:
                data = self._backend.detokenize(toks)
            except BackendError as e:
                raise from_backend_error(e, op="text") from e
            return bytes(data).decode("utf-8", errors="replace")

    def _prompt_tokens(self, prompt: Any, parse_special: bool, *, room: bool) -> list[int]:
        """Tokens of a prompt (str, or a token list) that fit the context (lock held)."""
        assert self._info is not None
        if isinstance(prompt, str):
            if not prompt:
                raise ValueError("prompt is empty")
            tokens = self._tokenize(prompt, True, parse_special)
        elif _is_token_seq(prompt):
            tokens = _check_tokens(prompt, self._info.n_vocab)
        else:
            raise TypeError(f"prompt must be a str, not {type(prompt).__name__}")
        if not tokens:
            raise ValueError("prompt is empty (no tokens)")
        n_ctx = self._info.n_ctx
        if len(tokens) > n_ctx - (1 if room else 0):
            extra = " and leave room for one generated token" if room else ""
            raise ContextOverflowError(f"prompt is {len(tokens)} tokens; the context window "
                                       f"(n_ctx={n_ctx}) cannot hold it{extra}")
        return tokens

    # ---- evaluation ----

    def logits(self, prompt: str | Sequence[int]) -> array.array:
        """Next-token logits (float32, n_vocab of them) after ``prompt``, from a clean state.

        Returns an ``array.array('f')`` (buffer protocol: ``numpy.asarray`` works on it).
        """
        with self._call("compute logits", model=True):
            if not self.capabilities.logits:
                raise UnsupportedCapabilityError(
                    f"the {self.capabilities.backend} backend does not expose logits")
            tokens = self._prompt_tokens(prompt, False, room=False)
            try:
                self._backend.reset()
                self._backend.eval(tokens)
                return self._backend.logits()
            except BackendError as e:
                raise from_backend_error(e, op="eval") from e

    def cancel(self) -> bool:
        """Ask the streaming generation (from any thread) to stop before its next token.

        Returns True if a generation was running. It ends with finish reason "cancelled".
        """
        gen = self._generation
        if gen is None:
            return False
        self._cancelled = gen  # names the generation, so a later one is not affected
        self._backend.request_cancel()  # stops a running step before its next token
        return True

    @staticmethod
    def _gen_params(max_tokens: Any, given: dict[str, Any],
                    params: GenerationParams | None) -> GenerationParams:
        if isinstance(max_tokens, GenerationParams):
            if params is not None:
                raise TypeError("pass a GenerationParams once, as params= or positionally")
            params, max_tokens = max_tokens, 64
        given["max_tokens"] = max_tokens
        return check_generation_params(merge_params(params, GenerationParams, given))

    def generate(self, prompt: str, max_tokens: int | GenerationParams = 64,
                 temperature: float = 0.8, top_k: int = 40, top_p: float = 0.95,
                 min_p: float = 0.05, repeat_penalty: float = 1.1, seed: int | None = None,
                 stop: str | Sequence[str] = (), *,
                 params: GenerationParams | None = None) -> Iterator[str]:
        """Stream the completion of ``prompt`` as str chunks.

        Arguments are checked now (before the first chunk is requested). Closing the iterator
        (or leaving a ``for`` loop early) ends the generation and frees the engine at once.
        ``last_finish_reason`` tells why it ended. A GenerationParams may be passed as
        ``params`` or in place of ``max_tokens``.
        """
        gp = self._gen_params(max_tokens, dict(
            temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p,
            repeat_penalty=repeat_penalty, seed=seed, stop=stop), params)
        return self._start(prompt, gp, parse_special=False)

    def complete(self, prompt: str, max_tokens: int | GenerationParams = 64,
                 temperature: float = 0.8, top_k: int = 40, top_p: float = 0.95,
                 min_p: float = 0.05, repeat_penalty: float = 1.1, seed: int | None = None,
                 stop: str | Sequence[str] = (), *,
                 params: GenerationParams | None = None) -> str:
        """The whole completion of ``prompt`` as one string (see :meth:`generate`)."""
        gp = self._gen_params(max_tokens, dict(
            temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p,
            repeat_penalty=repeat_penalty, seed=seed, stop=stop), params)
        return "".join(self._start(prompt, gp, parse_special=False))

    def chat(self, messages: Sequence[Mapping[str, str]],
             max_tokens: int | GenerationParams = 64, temperature: float = 0.8,
             top_k: int = 40, top_p: float = 0.95, min_p: float = 0.05,
             repeat_penalty: float = 1.1, seed: int | None = None,
             stop: str | Sequence[str] = (), *, params: GenerationParams | None = None) -> str:
        """The assistant's reply to ``messages`` ([{"role": ..., "content": ...}, ...]),
        formatted with the model's built-in chat template."""
        pairs = _check_messages(messages)
        gp = self._gen_params(max_tokens, dict(
            temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p,
            repeat_penalty=repeat_penalty, seed=seed, stop=stop), params)
        with self._call("chat", model=True):
            try:
                prompt = self._backend.apply_chat_template(pairs, True)
            except BackendError as e:
                raise from_backend_error(e, op="template") from e
        return "".join(self._start(prompt, gp, parse_special=True))

    def agenerate(self, prompt: str, max_tokens: int | GenerationParams = 64,
                  temperature: float = 0.8, top_k: int = 40, top_p: float = 0.95,
                  min_p: float = 0.05, repeat_penalty: float = 1.1, seed: int | None = None,
                  stop: str | Sequence[str] = (), *,
                  params: GenerationParams | None = None) -> AsyncIterator[str]:
        """Async twin of :meth:`generate`: each token is computed in a worker thread (inline
        where Python has no threads, e.g. Pyodide), so the event loop keeps running.
        ``await it.aclose()`` (or ``contextlib.aclosing``) frees the engine at once."""
        gp = self._gen_params(max_tokens, dict(
            temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p,
            repeat_penalty=repeat_penalty, seed=seed, stop=stop), params)
        return self._async_stream(self._start(prompt, gp, parse_special=False))

    async def acomplete(self, prompt: str, max_tokens: int | GenerationParams = 64,
                        **kwargs: Any) -> str:
        """Async twin of :meth:`complete`."""
        it = self.agenerate(prompt, max_tokens, **kwargs)
        try:
            return "".join([chunk async for chunk in it])
        finally:
            await it.aclose()  # type: ignore[attr-defined]

    async def _async_stream(self, it: Iterator[str]) -> AsyncIterator[str]:
        import asyncio  # here, not at the top: importing asyncio costs ~40 ms per process
        import concurrent.futures

        if not _THREADS_AVAILABLE:
            try:
                for chunk in it:
                    yield chunk
                    await asyncio.sleep(0)
            finally:
                it.close()  # type: ignore[attr-defined]
            return
        executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="llamart-gen")
        fut: concurrent.futures.Future[Any] | None = None
        try:
            while True:
                fut = executor.submit(next, it, _DONE)
                chunk = await asyncio.wrap_future(fut)
                fut = None
                if chunk is _DONE:
                    return
                yield chunk
        finally:
            if fut is not None and not fut.done():
                # cancelled while a token was being computed: stop, and close the generator
                # on the worker as soon as that token is done
                self.cancel()
                fut.add_done_callback(lambda _f: it.close())  # type: ignore[attr-defined]
            else:
                it.close()  # type: ignore[attr-defined]
            executor.shutdown(wait=False)

    def _start(self, prompt: Any, gp: GenerationParams, *, parse_special: bool) -> Iterator[str]:
        with self._call("start a generation", model=True):
            tokens = self._prompt_tokens(prompt, parse_special, room=True)
            epoch = self._epoch
        return self._stream(tokens, gp, epoch)

    def _check_current(self, token: object) -> None:
        self._check_open()
        if self._generation is not token:
            raise EngineStateError("this generation was ended by the engine")

    def _stream(self, tokens: list[int], gp: GenerationParams, epoch: int) -> Iterator[str]:
        token = object()
        seed = gp.seed if gp.seed is not None else random.getrandbits(31)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        stops = _StopMatcher(gp.stop)
        backend = self._backend
        finish = "cancelled"  # until the generation decides otherwise
        produced = 0
        with self._lock:
            self._check_open()
            self._check_idle("start a generation")
            if epoch != self._epoch:
                raise EngineStateError("the model changed after generate() was called; "
                                       "call generate() again")
            self._generation = token
            self.last_finish_reason = None
            self.last_usage = None
        try:
            with self._lock:
                self._check_current(token)
                try:
                    backend.reset()
                    if gp.max_tokens:
                        backend.eval(tokens)
                        backend.sampler_init(gp, seed)
                        backend.sampler_accept(tokens)
                except BackendError as e:
                    raise from_backend_error(e, op="eval") from e
            reason = "length"
            remaining = gp.max_tokens
            step = 1  # the first token alone, so chunking never delays the first text
            while remaining:
                with self._lock:
                    self._check_current(token)
                    if self._cancelled is token:
                        reason = "cancelled"
                        break
                    n = min(step, remaining)
                    started = time.perf_counter()
                    try:
                        toks, end = backend.next_tokens(n, n < remaining)
                        pieces = [backend.token_to_piece(t) for t in toks]
                    except BackendError as e:
                        raise from_backend_error(e, op="eval") from e
                    step = _next_step(time.perf_counter() - started, len(toks))
                remaining -= len(toks)
                for piece in pieces:
                    if self._cancelled is token:  # asked between two tokens of one step
                        break
                    produced += 1
                    text, matched = stops.feed(decoder.decode(piece))
                    if matched:
                        finish = "stop"
                        if text:
                            yield text
                        return
                    if text:
                        yield text
                if self._cancelled is token:
                    reason = "cancelled"
                    break
                if end == StepEnd.EOG:
                    reason = "stop"
                    break
                if end == StepEnd.CONTEXT:
                    reason = "context"
                    break
                # StepEnd.CANCELLED without self._cancelled: a request that came too late for
                # an earlier generation; the tokens returned are good, so carry on
            text, matched = stops.feed(decoder.decode(b"", final=True), final=True)
            finish = "stop" if matched else reason
            if text:
                yield text
        except (GeneratorExit, KeyboardInterrupt):
            raise  # closed early or interrupted: "cancelled" unless already decided
        except BaseException:
            finish = "error"
            raise
        finally:
            with self._lock:
                if self._generation is token:
                    self._generation = None
                    self._cancelled = None
                    self.last_finish_reason = finish
                    self.last_usage = {"prompt_tokens": len(tokens),
                                       "completion_tokens": produced, "seed": seed}
