"""The native backend: cffi (ABI mode) over libllamart, our C API linked against llama.cpp.

Each native handle is owned by one Python object with an idempotent ``close``: an adapter is
freed through its model (the C layer unsets it first), and a model frees its context and any
adapters left before itself.
"""

from __future__ import annotations

import array
import importlib.util
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..params import GenerationParams, ModelParams
from ._c_api import CODES, STEP_ENDS, c_log_level, forward_log
from ._cdefs import cdef_source, lib_dir
from ._ffi_build import MODULE, digest
from .base import BackendError, Capabilities, ErrorKind, ModelInfo

_lock = threading.Lock()
_loaded: tuple[Any, Any] | None = None


def _library() -> tuple[Any, Any]:
    """Load the cffi FFI and libllamart once per process."""
    global _loaded
    with _lock:
        if _loaded is None:
            folder = lib_dir()
            name = "libllamart.dylib" if sys.platform == "darwin" else "libllamart.so"
            path = folder / name
            if not path.exists():
                raise ImportError(
                    f"llamart's native library is missing ({path}); install llamart with "
                    "'pip install .' or set LLAMART_LIB_DIR to a folder holding libllamart"
                )
            ffi = _ffi(folder)
            _loaded = (ffi, ffi.dlopen(str(path)))
        return _loaded


def _ffi(folder: Path) -> Any:
    """The FFI for llamart.h: the module the build wrote beside the library when it matches
    the header (declarations parsed once, at build time), else parsed now."""
    cdef = cdef_source()
    prebuilt = folder / f"{MODULE}.py"
    if prebuilt.exists():
        spec = importlib.util.spec_from_file_location(f"llamart._lib.{MODULE}", prebuilt)
        if spec is not None and spec.loader is not None:
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            if getattr(module, "CDEF_SHA256", None) == digest(cdef):
                return module.ffi
    import cffi

    ffi = cffi.FFI()
    ffi.cdef(cdef)
    return ffi


def gguf_string_scan() -> Callable[[memoryview, int, int, bool], int]:
    """lm_gguf_scan_strings over bytes Python holds, without copying them (ImportError when the
    library is older than the function)."""
    ffi, lib = _library()
    try:
        fn = lib.lm_gguf_scan_strings
    except AttributeError as exc:
        raise ImportError("libllamart has no lm_gguf_scan_strings") from exc

    def scan(data: memoryview, n: int, max_len: int, unique: bool) -> int:
        return int(fn(ffi.from_buffer("uint8_t[]", data), len(data), n, max_len, unique))

    return scan


class _Model:
    """Owns one lm_model* (context + model + its adapters)."""

    def __init__(self, ffi: Any, lib: Any, ptr: Any) -> None:
        self.ffi, self.lib, self.ptr = ffi, lib, ptr

    @property
    def closed(self) -> bool:
        return self.ptr == self.ffi.NULL

    def close(self) -> None:
        if not self.closed:
            ptr, self.ptr = self.ptr, self.ffi.NULL
            self.lib.lm_model_free(ptr)


class _Adapter:
    """Owns one lm_adapter*; freed through its model, never after it."""

    def __init__(self, model: _Model, ptr: Any, path: str) -> None:
        self.model, self.ptr, self.path = model, ptr, path

    def close(self) -> None:
        ffi = self.model.ffi
        if self.ptr != ffi.NULL:
            ptr, self.ptr = self.ptr, ffi.NULL
            if not self.model.closed:  # a freed model already freed its adapters
                self.model.lib.lm_adapter_free(self.model.ptr, ptr)


class NativeBackend:
    """llama.cpp in this process, through cffi."""

    name = "native"

    def __init__(self) -> None:
        self._ffi, self._lib = _library()
        self._lib.lm_log_set_level(c_log_level())
        self._model: _Model | None = None
        self._pieces: dict[int, bytes] = {}
        self._n_vocab = 0
        self._status = self._ffi.new("int32_t *")
        self._cancel = self._ffi.new("int32_t *")  # Python-owned: safe to set at any time
        self._tokens = self._ffi.new("int32_t[]", 64)
        self._piece_buf = self._ffi.new("char[]", 256)
        self._caps = Capabilities(
            backend=self.name,
            lora=True,
            lora_reason=None,
            mmap=True,
            threads=True,
            system_info=self._ffi.string(self._lib.lm_system_info()).decode("utf-8", "replace"),
        )

    # ---- helpers
    @property
    def capabilities(self) -> Capabilities:
        return self._caps

    def _drain_log(self) -> None:
        text = self._ffi.string(self._lib.lm_log_take()).decode("utf-8", "replace")
        forward_log(text)

    def _error(self, kind: str, fallback: str) -> BackendError:
        reason = self._ffi.string(self._lib.lm_last_error()).decode("utf-8", "replace").strip()
        self._drain_log()
        return BackendError(kind, reason or fallback)

    def _m(self) -> Any:
        if self._model is None or self._model.closed:
            raise BackendError(ErrorKind.STATE, "no model is loaded")
        return self._model.ptr

    def _string(self, fn: Any, *args: Any) -> str:
        n = fn(*args, self._ffi.NULL, 0)
        if n >= 0:
            return ""
        buf = self._ffi.new("char[]", -n)
        fn(*args, buf, -n)
        return self._ffi.string(buf).decode("utf-8", "replace")

    # ---- lifecycle
    def load_model(self, path: str, params: ModelParams, n_threads: int) -> ModelInfo:
        self.unload_model()
        ptr = self._lib.lm_model_load(
            path.encode(), params.n_ctx, params.n_batch, n_threads, int(params.use_mmap), 0
        )
        if ptr == self._ffi.NULL:
            raise self._error(ErrorKind.LOAD, "llama.cpp could not load the model")
        self._drain_log()
        self._model = _Model(self._ffi, self._lib, ptr)
        lib = self._lib
        self._n_vocab = lib.lm_n_vocab(ptr)
        meta = {
            self._string(lib.lm_meta_key, ptr, i): self._string(lib.lm_meta_val, ptr, i)
            for i in range(lib.lm_meta_count(ptr))
        }
        return ModelInfo(
            path=path,
            n_vocab=self._n_vocab,
            n_ctx=lib.lm_n_ctx(ptr),
            n_ctx_train=lib.lm_n_ctx_train(ptr),
            n_batch=lib.lm_n_batch(ptr),
            n_embd=lib.lm_n_embd(ptr),
            n_layer=lib.lm_n_layer(ptr),
            n_params=int(lib.lm_n_params(ptr)),
            size=int(lib.lm_model_size(ptr)),
            description=self._string(lib.lm_model_desc, ptr),
            bos=lib.lm_token_bos(ptr),
            eos=lib.lm_token_eos(ptr),
            metadata=meta,
        )

    def unload_model(self) -> None:
        if self._model is not None:
            self._model.close()
            self._model = None
            self._pieces.clear()
            self._drain_log()

    def dispose(self) -> None:
        self.unload_model()

    # ---- text
    def tokenize(self, text: str, add_special: bool, parse_special: bool) -> list[int]:
        m = self._m()
        data = text.encode("utf-8")
        n_max = len(data) + 8
        buf = self._ffi.new("int32_t[]", n_max)
        n = self._lib.lm_tokenize(m, data, len(data), buf, n_max, add_special, parse_special)
        if n < 0 and n != -1:
            n_max = -n
            buf = self._ffi.new("int32_t[]", n_max)
            n = self._lib.lm_tokenize(m, data, len(data), buf, n_max, add_special, parse_special)
        if n < 0:
            raise self._error(ErrorKind.ARG, "tokenization failed")
        return list(self._ffi.unpack(buf, n))

    def token_to_piece(self, token: int) -> bytes:
        piece = self._pieces.get(token)
        if piece is None:
            m = self._m()
            n = self._lib.lm_token_to_piece(m, token, self._piece_buf, 256, 0)
            if n < 0:
                if n == -1:
                    raise BackendError(ErrorKind.ARG, f"token {token} is outside the vocabulary")
                big = self._ffi.new("char[]", -n)
                n = self._lib.lm_token_to_piece(m, token, big, -n, 0)
                piece = self._ffi.unpack(big, n)
            else:
                piece = self._ffi.unpack(self._piece_buf, n)
            self._pieces[token] = piece
        return piece

    def detokenize(self, tokens: Sequence[int]) -> bytes:
        m = self._m()
        toks = self._ffi.new("int32_t[]", list(tokens))
        size = max(64, 8 * len(tokens))
        for _ in range(2):
            buf = self._ffi.new("char[]", size)
            n = self._lib.lm_detokenize(m, toks, len(tokens), buf, size, 0, 0)
            if n >= 0:
                return self._ffi.unpack(buf, n)
            if n == -1 and len(tokens) > 0 and size > 1:
                raise BackendError(ErrorKind.ARG, "a token is outside the vocabulary")
            size = -n + 1
        raise BackendError(ErrorKind.ARG, "detokenization failed")

    def apply_chat_template(self, messages: Sequence[tuple[str, str]], add_assistant: bool) -> str:
        m = self._m()
        keep = [self._ffi.new("char[]", s.encode()) for pair in messages for s in pair]
        roles = self._ffi.new("char *[]", keep[0::2])
        contents = self._ffi.new("char *[]", keep[1::2])
        size = 256 + sum(len(c) + len(r) for r, c in messages) * 2
        for _ in range(2):
            buf = self._ffi.new("char[]", size)
            n = self._lib.lm_chat_apply(m, self._ffi.NULL, roles, contents, len(messages),
                                        add_assistant, buf, size)
            if n >= 0:
                return self._ffi.unpack(buf, n).decode("utf-8", "replace")
            if n == -6 or n == -1:
                raise self._error(CODES[n], "chat template failed")
            size = -n
        raise BackendError(ErrorKind.TEMPLATE, "chat template failed")

    # ---- evaluation
    def reset(self) -> None:
        self._lib.lm_reset(self._m())

    def eval(self, tokens: Sequence[int]) -> None:
        m = self._m()
        rc = self._lib.lm_eval(m, self._ffi.new("int32_t[]", list(tokens)), len(tokens))
        if rc != 0:
            raise self._error(CODES.get(rc, ErrorKind.DECODE), "evaluation failed")

    def logits(self) -> array.array:
        ptr = self._lib.lm_logits(self._m())
        if ptr == self._ffi.NULL:
            raise BackendError(ErrorKind.STATE, "no logits: nothing has been evaluated")
        out = array.array("f")
        out.frombytes(self._ffi.buffer(ptr, 4 * self._n_vocab))
        return out

    # ---- sampling
    def sampler_init(self, params: GenerationParams, seed: int) -> None:
        rc = self._lib.lm_sampler_init(
            self._m(), params.temperature, params.top_k, params.top_p, params.min_p,
            params.repeat_penalty, params.repeat_last_n, seed,
        )
        if rc != 0:
            raise BackendError(CODES.get(rc, ErrorKind.ARG), "invalid sampling parameters")

    def sampler_accept(self, tokens: Sequence[int]) -> None:
        toks = self._ffi.new("int32_t[]", list(tokens))
        self._lib.lm_sampler_accept(self._m(), toks, len(tokens))

    def next_tokens(self, max_n: int, eval_last: bool) -> tuple[list[int], str]:
        if max_n > len(self._tokens):
            self._tokens = self._ffi.new("int32_t[]", max_n)
        n = self._lib.lm_generate(self._m(), max_n, eval_last, self._tokens, self._status,
                                  self._cancel)
        if n < 0:
            raise self._error(CODES.get(n, ErrorKind.DECODE), "sampling failed")
        end = STEP_ENDS.get(self._status[0])
        if end is None:
            raise self._error(CODES.get(self._status[0], ErrorKind.DECODE), "decoding failed")
        return self._ffi.unpack(self._tokens, n), end

    def request_cancel(self) -> None:
        self._cancel[0] = 1

    # ---- LoRA
    def load_adapter(self, path: str) -> _Adapter:
        m = self._m()
        ptr = self._lib.lm_adapter_load(m, path.encode())
        if ptr == self._ffi.NULL:
            raise self._error(ErrorKind.LOAD, "llama.cpp could not load the adapter")
        self._drain_log()
        assert self._model is not None
        return _Adapter(self._model, ptr, path)

    def free_adapter(self, handle: _Adapter) -> None:
        handle.close()

    def apply_adapters(self, adapters: Sequence[tuple[_Adapter, float]]) -> None:
        m = self._m()
        n = len(adapters)
        ptrs = self._ffi.new("lm_adapter *[]", [a.ptr for a, _ in adapters] or [self._ffi.NULL])
        scales = self._ffi.new("float[]", [float(s) for _, s in adapters] or [0.0])
        rc = self._lib.lm_adapters_apply(m, ptrs, scales, n)
        if rc != 0:
            raise self._error(CODES.get(rc, ErrorKind.ARG), "could not apply the adapters")

    def adapter_metadata(self, handle: _Adapter) -> dict[str, str]:
        lib = self._lib
        n = lib.lm_adapter_meta_count(handle.ptr)
        return {
            self._string(lib.lm_adapter_meta_key, handle.ptr, i):
            self._string(lib.lm_adapter_meta_val, handle.ptr, i)
            for i in range(n)
        }
