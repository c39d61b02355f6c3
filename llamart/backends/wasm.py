"""The WebAssembly backend: llama.cpp compiled with emscripten, driven from Pyodide.

The emscripten module (``build-wasm/wasm/llamart_wasm.js`` + ``.wasm``) is loaded by the JS glue
``wasm/llamart_pyodide.js`` and registered in Pyodide as the Python module ``llamart_wasm``.
This file calls its exported ``_lm_*`` functions (backends/llamart.h) through Pyodide's JS FFI:
strings and int32 arrays are copied into the module's heap (``lm_malloc``), results are read
back from ``HEAPU8`` (re-read on every access: the heap view changes when memory grows).

The module has its own file system: a model path must exist there. Paths that exist only in
Pyodide's FS are copied in on load (see llamart.web for ways to avoid the copy).
Single-threaded, no mmap, no LoRA in this release.
"""

from __future__ import annotations

import array
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from ..params import GenerationParams, ModelParams
from ._c_api import CODES, STEP_ENDS, c_log_level, forward_log
from .base import BackendError, Capabilities, ErrorKind, ModelInfo

_log = logging.getLogger("llamart.wasm")

LORA_REASON = (
    "LoRA adapters are not applied on the WebAssembly backend in this release; "
    "use the native backend."
)
_COPY_CHUNK = 1 << 20


def wasm_module() -> Any:
    """The emscripten module registered as ``llamart_wasm`` (ImportError saying how if not)."""
    try:
        import llamart_wasm  # type: ignore[import-not-found]
    except ImportError as exc:
        where = "in Pyodide" if sys.platform == "emscripten" else "outside Pyodide"
        raise ImportError(
            f"the llamart WebAssembly module is not available ({where}): build it "
            "(see wasm/README.md), load it with wasm/llamart_pyodide.js "
            "(LlamartPyodide.load(pyodide, {glue, wasm})) so that `import llamart_wasm` works, "
            "then create the engine"
        ) from exc
    return llamart_wasm


def gguf_string_scan() -> Callable[[memoryview, int, int, bool], int]:
    """lm_gguf_scan_strings in the registered module (ImportError when there is none, or it is
    older than the function): the bytes are copied into its memory for the call."""
    module = wasm_module()
    if not hasattr(module, "_lm_gguf_scan_strings"):
        raise ImportError("this llamart WebAssembly module has no lm_gguf_scan_strings")
    heap = _Heap(module)

    def scan(data: memoryview, n: int, max_len: int, unique: bool) -> int:
        ptr = heap.alloc(len(data))
        try:
            heap.write(ptr, data)
            return int(module._lm_gguf_scan_strings(ptr, len(data), n, max_len, int(unique)))
        finally:
            heap.free(ptr)

    return scan


def _u32(ptr: Any) -> int:
    """A wasm32 pointer as a non-negative int (JS may hand back pointers above 2 GiB signed)."""
    return int(ptr) & 0xFFFFFFFF


class _Heap:
    """Copies between Python and the module's linear memory."""

    def __init__(self, module: Any) -> None:
        self.m = module

    def alloc(self, size: int) -> int:
        ptr = _u32(self.m._lm_malloc(max(1, size)))
        if ptr == 0:
            raise BackendError(ErrorKind.ALLOC, f"out of WebAssembly memory ({size} bytes)")
        return ptr

    def free(self, *ptrs: int) -> None:
        for ptr in ptrs:
            if ptr:
                self.m._lm_free(ptr)

    def write(self, ptr: int, data: bytes | memoryview) -> None:
        if data:
            self.m.HEAPU8.subarray(ptr, ptr + len(data)).assign(data)

    def read(self, ptr: int, size: int) -> bytes:
        if size <= 0:
            return b""
        return bytes(self.m.HEAPU8.subarray(ptr, ptr + size).to_bytes())

    def put(self, data: bytes, nul: bool = True) -> int:
        """Copy bytes (NUL-terminated unless told) into a fresh allocation."""
        ptr = self.alloc(len(data) + 1)
        self.write(ptr, data + b"\0" if nul else data)
        return ptr

    def put_ints(self, values: Sequence[int]) -> int:
        return self.put(array.array("i", values).tobytes(), nul=False)

    def cstr(self, ptr: Any) -> str:
        p = _u32(ptr)
        return str(self.m.UTF8ToString(p)) if p else ""

    def i32(self, ptr: int) -> int:
        return int(self.m.HEAP32[ptr >> 2])  # one typed-array read, no copy


def _split_i64(value: int) -> tuple[int, int]:
    """An int64 as the (low, high) signed int32 pair emcc's legalized exports take."""
    value &= 0xFFFFFFFFFFFFFFFF
    lo, hi = value & 0xFFFFFFFF, value >> 32
    return (lo - (1 << 32) if lo >= 1 << 31 else lo), (hi - (1 << 32) if hi >= 1 << 31 else hi)


class WasmBackend:
    """llama.cpp as a WebAssembly module beside Pyodide, through Pyodide's JS FFI."""

    name = "wasm"

    def __init__(self, module: Any | None = None) -> None:
        self._m = module if module is not None else wasm_module()
        self._heap = _Heap(self._m)
        self._m._lm_log_set_level(c_log_level())
        self._model = 0
        self._n_vocab = 0
        self._pieces: dict[int, bytes] = {}
        self._status = self._heap.alloc(8)  # int32 status, then the int32 cancel flag
        self._cancel = self._status + 4
        self._tokens, self._tokens_cap = self._heap.alloc(4 * 64), 64
        self._caps = Capabilities(
            backend=self.name,
            lora=False,
            lora_reason=LORA_REASON,
            mmap=False,
            threads=False,
            system_info=self._heap.cstr(self._m._lm_system_info()),
        )
        self._drain_log()

    # ---- helpers
    @property
    def capabilities(self) -> Capabilities:
        return self._caps

    def _drain_log(self) -> None:
        text = self._heap.cstr(self._m._lm_log_take())
        forward_log(text)

    def _error(self, kind: str, fallback: str) -> BackendError:
        reason = self._heap.cstr(self._m._lm_last_error()).strip()
        self._drain_log()
        return BackendError(kind, reason or fallback)

    def _mp(self) -> int:
        if not self._model:
            raise BackendError(ErrorKind.STATE, "no model is loaded")
        return self._model

    def _string(self, fn: Any, *args: Any) -> str:
        n = int(fn(*args, 0, 0))
        if n >= 0:
            return ""
        buf = self._heap.alloc(-n)
        try:
            n = int(fn(*args, buf, -n))
            return self._heap.read(buf, max(n, 0)).decode("utf-8", "replace")
        finally:
            self._heap.free(buf)

    def _stage(self, path: str) -> bool:
        """Make ``path`` readable by the module; True if it was copied in from Pyodide's FS.

        A copy is needed only for files that exist in Pyodide's FS alone (not on a mount
        shared with the module, see llamart.web); it is removed again right after the load
        (llama.cpp reads the whole file then: mmap is off), so memory is doubled only briefly.
        """
        fs = self._m.FS
        if fs.analyzePath(path).exists or not os.path.isfile(path):
            return False  # shared file, or missing: llama.cpp reports that
        _log.info("copying %s into the WebAssembly module's file system for loading", path)
        parts = [p for p in os.path.dirname(path).split("/") if p]
        for i in range(len(parts)):
            sub = "/" + "/".join(parts[: i + 1])
            if not fs.analyzePath(sub).exists:
                fs.mkdir(sub)
        from pyodide.ffi import to_js  # type: ignore[import-not-found]

        stream = fs.open(path, "w")
        try:
            with open(path, "rb") as src:
                while chunk := src.read(_COPY_CHUNK):
                    fs.write(stream, to_js(chunk), 0, len(chunk))
        finally:
            fs.close(stream)
        return True

    # ---- lifecycle
    def load_model(self, path: str, params: ModelParams, n_threads: int) -> ModelInfo:
        self.unload_model()
        staged = self._stage(path)
        p = self._heap.put(path.encode())
        try:
            # one thread, no mmap: this build has neither (and wasm32 needs mmap off)
            ptr = _u32(self._m._lm_model_load(p, params.n_ctx, params.n_batch, 1, 0, 0))
        finally:
            self._heap.free(p)
            if staged:
                self._m.FS.unlink(path)
        if ptr == 0:
            raise self._error(ErrorKind.LOAD, "llama.cpp could not load the model")
        self._drain_log()
        self._model = ptr
        m = self._m
        self._n_vocab = int(m._lm_n_vocab(ptr))
        meta = {
            self._string(m._lm_meta_key, ptr, i): self._string(m._lm_meta_val, ptr, i)
            for i in range(int(m._lm_meta_count(ptr)))
        }
        return ModelInfo(
            path=path,
            n_vocab=self._n_vocab,
            n_ctx=int(m._lm_n_ctx(ptr)),
            n_ctx_train=int(m._lm_n_ctx_train(ptr)),
            n_batch=int(m._lm_n_batch(ptr)),
            n_embd=int(m._lm_n_embd(ptr)),
            n_layer=int(m._lm_n_layer(ptr)),
            n_params=int(m._lm_n_params(ptr)),
            size=int(m._lm_model_size(ptr)),
            description=self._string(m._lm_model_desc, ptr),
            bos=int(m._lm_token_bos(ptr)),
            eos=int(m._lm_token_eos(ptr)),
            metadata=meta,
        )

    def unload_model(self) -> None:
        if self._model:
            ptr, self._model = self._model, 0
            self._m._lm_model_free(ptr)
            self._pieces.clear()
            self._drain_log()

    def dispose(self) -> None:
        self.unload_model()
        if self._status:
            self._heap.free(self._status, self._tokens)
            self._status = self._cancel = self._tokens = 0

    # ---- text
    def tokenize(self, text: str, add_special: bool, parse_special: bool) -> list[int]:
        mp = self._mp()
        data = text.encode("utf-8")
        src = self._heap.put(data)
        n_max = len(data) + 8
        buf = self._heap.alloc(4 * n_max)
        try:
            n = int(self._m._lm_tokenize(mp, src, len(data), buf, n_max, int(add_special),
                                         int(parse_special)))
            if n < -1:
                self._heap.free(buf)
                n_max, buf = -n, 0
                buf = self._heap.alloc(4 * n_max)
                n = int(self._m._lm_tokenize(mp, src, len(data), buf, n_max, int(add_special),
                                             int(parse_special)))
            if n < 0:
                raise self._error(ErrorKind.ARG, "tokenization failed")
            return array.array("i", self._heap.read(buf, 4 * n)).tolist()
        finally:
            self._heap.free(src, buf)

    def token_to_piece(self, token: int) -> bytes:
        piece = self._pieces.get(token)
        if piece is None:
            mp = self._mp()
            size = 256
            for _ in range(2):
                buf = self._heap.alloc(size)
                try:
                    n = int(self._m._lm_token_to_piece(mp, token, buf, size, 0))
                    if n >= 0:
                        piece = self._heap.read(buf, n)
                        break
                finally:
                    self._heap.free(buf)
                if n == -1:
                    raise BackendError(ErrorKind.ARG, f"token {token} is outside the vocabulary")
                size = -n
            if piece is None:
                raise BackendError(ErrorKind.ARG, f"token {token} has no text piece")
            self._pieces[token] = piece
        return piece

    def detokenize(self, tokens: Sequence[int]) -> bytes:
        mp = self._mp()
        toks = self._heap.put_ints(list(tokens))
        size = max(64, 8 * len(tokens))
        try:
            for _ in range(2):
                buf = self._heap.alloc(size)
                try:
                    n = int(self._m._lm_detokenize(mp, toks, len(tokens), buf, size, 0, 0))
                    if n >= 0:
                        return self._heap.read(buf, n)
                finally:
                    self._heap.free(buf)
                if n == -1 and len(tokens) > 0 and size > 1:
                    raise BackendError(ErrorKind.ARG, "a token is outside the vocabulary")
                size = -n + 1
        finally:
            self._heap.free(toks)
        raise BackendError(ErrorKind.ARG, "detokenization failed")

    def apply_chat_template(self, messages: Sequence[tuple[str, str]], add_assistant: bool) -> str:
        mp = self._mp()
        heap = self._heap
        strings = [heap.put(s.encode("utf-8")) for pair in messages for s in pair]
        roles = heap.put_ints(strings[0::2])
        contents = heap.put_ints(strings[1::2])
        size = 256 + sum(len(c) + len(r) for r, c in messages) * 2
        try:
            for _ in range(2):
                buf = heap.alloc(size)
                try:
                    n = int(self._m._lm_chat_apply(mp, 0, roles, contents, len(messages),
                                                   int(add_assistant), buf, size))
                    if n >= 0:
                        return heap.read(buf, n).decode("utf-8", "replace")
                finally:
                    heap.free(buf)
                if n in (-6, -1):
                    raise self._error(CODES[n], "chat template failed")
                size = -n
        finally:
            heap.free(roles, contents, *strings)
        raise BackendError(ErrorKind.TEMPLATE, "chat template failed")

    # ---- evaluation
    def reset(self) -> None:
        self._m._lm_reset(self._mp())

    def eval(self, tokens: Sequence[int]) -> None:
        mp = self._mp()
        toks = self._heap.put_ints(list(tokens))
        try:
            rc = int(self._m._lm_eval(mp, toks, len(tokens)))
        finally:
            self._heap.free(toks)
        if rc != 0:
            raise self._error(CODES.get(rc, ErrorKind.DECODE), "evaluation failed")
        self._drain_log()

    def logits(self) -> array.array:
        ptr = _u32(self._m._lm_logits(self._mp()))
        if ptr == 0:
            raise BackendError(ErrorKind.STATE, "no logits: nothing has been evaluated")
        out = array.array("f")
        out.frombytes(self._heap.read(ptr, 4 * self._n_vocab))
        return out

    # ---- sampling
    def sampler_init(self, params: GenerationParams, seed: int) -> None:
        lo, hi = _split_i64(seed)
        rc = int(self._m._lm_sampler_init(
            self._mp(), float(params.temperature), int(params.top_k), float(params.top_p),
            float(params.min_p), float(params.repeat_penalty), int(params.repeat_last_n), lo, hi,
        ))
        if rc != 0:
            raise BackendError(CODES.get(rc, ErrorKind.ARG), "invalid sampling parameters")

    def sampler_accept(self, tokens: Sequence[int]) -> None:
        toks = self._heap.put_ints(list(tokens))
        try:
            self._m._lm_sampler_accept(self._mp(), toks, len(tokens))
        finally:
            self._heap.free(toks)

    def next_tokens(self, max_n: int, eval_last: bool) -> tuple[list[int], str]:
        if max_n > self._tokens_cap:
            grown = self._heap.alloc(4 * max_n)
            self._heap.free(self._tokens)
            self._tokens, self._tokens_cap = grown, max_n
        n = int(self._m._lm_generate(self._mp(), max_n, int(eval_last), self._tokens,
                                     self._status, self._cancel))
        if n < 0:
            raise self._error(CODES.get(n, ErrorKind.DECODE), "sampling failed")
        status = self._heap.i32(self._status)
        end = STEP_ENDS.get(status)
        if end is None:
            raise self._error(CODES.get(status, ErrorKind.DECODE), "decoding failed")
        return array.array("i", self._heap.read(self._tokens, 4 * n)).tolist(), end

    def request_cancel(self) -> None:
        if self._cancel:
            self._heap.write(self._cancel, (1).to_bytes(4, "little"))

    # ---- LoRA: not in this build's release (capabilities.lora is False)
    def load_adapter(self, path: str) -> Any:
        raise BackendError(ErrorKind.UNSUPPORTED, LORA_REASON)

    def free_adapter(self, handle: Any) -> None:
        raise BackendError(ErrorKind.UNSUPPORTED, LORA_REASON)

    def apply_adapters(self, adapters: Sequence[tuple[Any, float]]) -> None:
        raise BackendError(ErrorKind.UNSUPPORTED, LORA_REASON)

    def adapter_metadata(self, handle: Any) -> dict[str, str]:
        raise BackendError(ErrorKind.UNSUPPORTED, LORA_REASON)
