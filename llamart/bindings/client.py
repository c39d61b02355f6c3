"""The one client of our C API (backends/llamart.h): the :class:`Backend` calls over an FFI.

Both runtimes run this code: natively the adapter is cffi (ffi_cffi.py), in Pyodide it is the
emscripten module's heap and exports (ffi_emscripten.py). An adapter holds only how memory and
calls cross; what the calls mean, how sizes are retried and how codes become errors is here.

Ownership: the session (model + context + sampler + adapters) is owned by one :class:`_Session`
whose idempotent ``close`` is a ``weakref.finalize`` on the backend: a backend dropped without
``dispose()`` still frees it (even while adapter handles live on), and ``lm_session_free``
unsets and frees the adapters, then the context, then the model. An adapter is freed through
its session, never after it.
"""

from __future__ import annotations

import array
import weakref
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from ..params import GenerationParams, ModelParams
from . import _c_api
from . import _c_constants as C
from ._c_api import (
    CAP_EMBEDDINGS,
    CAP_GRAMMAR,
    CAP_JSON_SCHEMA,
    CAP_LORA,
    CAP_MMAP,
    CAP_THREADS,
    LORA_REASON,
    POOLING,
    STEP_ENDS,
    kind,
)
from .base import BackendError, Capabilities, ErrorKind, ModelInfo

_FIRST_TRY = 256  # bytes offered to a string-returning call before it says how many it needs


class Scope(Protocol):
    """Memory for the arguments of a few calls, released together by ``close()``."""

    def text(self, data: bytes) -> Any: ...  # a NUL-terminated copy
    def view(self, data: memoryview) -> Any: ...  # read-only bytes, not copied where possible
    def i32s(self, values: Sequence[int]) -> Any: ...
    def f32s(self, values: Sequence[float]) -> Any: ...
    def pointers(self, ctype: str, values: Sequence[Any]) -> Any: ...  # ctype: "char *"...
    def out(self, nbytes: int) -> Any: ...  # uninitialised bytes (char *)
    def out_i32s(self, n: int) -> Any: ...  # n int32_t, zeroed
    def out_f32s(self, n: int) -> Any: ...  # n floats for the callee to write (float *)
    def close(self) -> None: ...


class Ffi(Protocol):
    """How memory and calls cross into the C library on one runtime."""

    lib: Any  # the lm_* functions as attributes
    NULL: Any

    def scope(self) -> AbstractContextManager[Scope]: ...
    def arena(self) -> Scope: ...  # a Scope kept open by its owner
    def ptr(self, raw: Any) -> Any | None: ...  # a returned pointer, None for NULL
    def string(self, ptr: Any) -> str: ...  # a returned const char * ("" for NULL)
    def i64(self, value: int) -> tuple[int, ...]: ...  # the argument(s) of an int64_t
    def read(self, ptr: Any, nbytes: int) -> bytes: ...
    def read_i32s(self, ptr: Any, n: int) -> list[int]: ...
    def read_f32s(self, ptr: Any, n: int) -> array.array: ...
    def get_i32(self, ptr: Any) -> int: ...
    def set_i32(self, ptr: Any, value: int) -> None: ...
    def staged(self, path: str) -> AbstractContextManager[None]: ...  # make path loadable


def string_scanner(ffi: Ffi) -> Callable[[memoryview, int, int, bool], int]:
    """lm_gguf_scan_strings over bytes Python holds (llamart.gguf's fast path, see
    llamart.gguf.c_scan)."""
    _c_api.check_library(ffi, "the llamart C library")
    try:
        fn = ffi.lib.lm_gguf_scan_strings
    except AttributeError as exc:
        raise ImportError("the llamart C library has no lm_gguf_scan_strings") from exc

    def scan(data: memoryview, n: int, max_len: int, unique: bool) -> int:
        with ffi.scope() as s:
            return int(fn(s.view(data), len(data), n, max_len, int(unique)))

    return scan


def _pooling(name: str | None) -> int:
    """The LM_POOLING_* code of a pooling name (None: the model's own)."""
    if name not in POOLING:
        raise BackendError(ErrorKind.ARG, f"unknown pooling type {name!r}")
    return POOLING[name]


class _Session:
    """Owns one lm_session* (model + context + sampler + adapters); freed at the latest when
    ``owner`` (the backend) is garbage."""

    def __init__(self, owner: object, lib: Any, ptr: Any) -> None:
        self.ptr = ptr
        self._finalizer = weakref.finalize(owner, lib.lm_session_free, ptr)

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    def close(self) -> None:
        self._finalizer()  # runs lm_session_free at most once


class _Adapter:
    """Owns one lm_adapter*; freed through its session (a freed session freed it already)."""

    def __init__(self, session: _Session, lib: Any, ptr: Any, path: str) -> None:
        self.session, self._lib, self.ptr, self.path = session, lib, ptr, path

    def close(self) -> None:
        ptr, self.ptr = self.ptr, None
        if ptr is not None and not self.session.closed:
            self._lib.lm_adapter_free(self.session.ptr, ptr)


class CApiClient:
    """A :class:`~llamart.bindings.base.Backend` over the llamart C API through ``ffi``."""

    name = "c-api"

    def __init__(self, ffi: Ffi, where: str) -> None:
        _c_api.check_library(ffi, where)
        self._ffi, self._lib = ffi, ffi.lib
        self._lib.lm_log_set_level(_c_api.c_log_level())
        self._session: _Session | None = None
        self._pieces: dict[int, bytes] = {}
        self._n_vocab = 0
        # buffers every step reuses; the arena is released by dispose() or when self is dropped
        self._arena = ffi.arena()
        self._release = weakref.finalize(self, self._arena.close)
        self._status, self._cancel = self._arena.out_i32s(1), self._arena.out_i32s(1)
        self._tokens, self._tokens_cap = self._arena.out_i32s(64), 64
        bits = int(self._lib.lm_capabilities())
        lora = bool(bits & CAP_LORA)
        self._caps = Capabilities(
            backend=self.name,
            lora=lora,
            lora_reason=None if lora else _c_api.lora_reason(self.name, where),
            mmap=bool(bits & CAP_MMAP),
            threads=bool(bits & CAP_THREADS),
            max_threads=int(self._lib.lm_max_threads()) or None,
            embeddings=bool(bits & CAP_EMBEDDINGS),
            system_info=ffi.string(self._lib.lm_system_info()),
            grammar=bool(bits & CAP_GRAMMAR),
            json_schema=bool(bits & CAP_JSON_SCHEMA),
            parallel=True,  # lm_step and the lm_slot_* calls are in every build of the core
        )
        self._drain_log()

    # ---- helpers
    @property
    def capabilities(self) -> Capabilities:
        return self._caps

    def cpu_variants(self) -> list[tuple[str, int, str]]:
        """ggml's CPU variants beside the library, best first: (name, ggml's score for this
        CPU, status: "picked", "probe failed: ...", ...); [] without runtime dispatch."""
        text = self._str(self._lib.lm_cpu_variants)
        rows = [line.split("\t", 2) for line in text.splitlines() if line.count("\t") >= 2]
        return [(name, int(score), status) for name, score, status in rows]

    def _drain_log(self) -> None:
        _c_api.forward_log(self._ffi.string(self._lib.lm_log_take()))

    def _error(self, code_or_kind: int | str, fallback: str) -> BackendError:
        """The failing call's reason (lm_last_error, this thread's) as a BackendError."""
        what = code_or_kind if isinstance(code_or_kind, str) else kind(code_or_kind)
        reason = self._ffi.string(self._lib.lm_last_error()).strip()
        self._drain_log()
        return BackendError(what, reason or fallback)

    def _s(self) -> Any:
        if self._session is None or self._session.closed:
            raise BackendError(ErrorKind.STATE, "no model is loaded")
        return self._session.ptr

    def _text(self, fn: Any, *args: Any, size: int = _FIRST_TRY) -> bytes:
        """Call a string-returning function (buf, size last) the snprintf way."""
        with self._ffi.scope() as s:
            buf = s.out(size)
            n = int(fn(*args, buf, size))
            if n >= size:
                size = n + 1
                buf = s.out(size)
                n = int(fn(*args, buf, size))
            if n < 0:
                raise self._error(n, f"{getattr(fn, '__name__', 'a call')} failed")
            return self._ffi.read(buf, min(n, size - 1))

    def _str(self, fn: Any, *args: Any) -> str:
        return self._text(fn, *args).decode("utf-8", "replace")

    def _lora(self) -> None:
        if not self._caps.lora:
            raise BackendError(ErrorKind.UNSUPPORTED, self._caps.lora_reason or LORA_REASON)

    # ---- lifecycle
    def load_model(self, path: str, params: ModelParams, n_threads: int) -> ModelInfo:
        self.unload_model()
        lib, caps = self._lib, self._caps
        threads = n_threads if caps.threads else 1
        mmap = int(params.use_mmap and caps.mmap)
        with self._ffi.staged(path), self._ffi.scope() as s:
            raw = lib.lm_session_load_ex(s.text(path.encode()), params.n_ctx, params.n_batch,
                                         threads, mmap, int(params.vocab_only),
                                         1 if params.vocab_only else params.n_parallel)
        ptr = self._ffi.ptr(raw)
        if ptr is None:
            raise self._error(ErrorKind.LOAD, "llama.cpp could not load the model")
        self._drain_log()
        self._session = _Session(self, lib, ptr)
        self._n_vocab = int(lib.lm_n_vocab(ptr))
        meta = {self._str(lib.lm_meta_key, ptr, i): self._str(lib.lm_meta_val, ptr, i)
                for i in range(int(lib.lm_meta_count(ptr)))}
        return ModelInfo(
            path=path,
            n_vocab=self._n_vocab,
            n_ctx=int(lib.lm_n_ctx(ptr)),
            n_ctx_train=int(lib.lm_n_ctx_train(ptr)),
            n_batch=int(lib.lm_n_batch(ptr)),
            n_embd=int(lib.lm_n_embd(ptr)),
            n_layer=int(lib.lm_n_layer(ptr)),
            n_params=int(lib.lm_n_params(ptr)),
            size=int(lib.lm_model_size(ptr)),
            description=self._str(lib.lm_model_desc, ptr),
            bos=int(lib.lm_token_bos(ptr)),
            eos=int(lib.lm_token_eos(ptr)),
            metadata=meta,
            n_threads=int(lib.lm_n_threads(ptr)),
        )

    def unload_model(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None
            self._pieces.clear()
            self._drain_log()

    def dispose(self) -> None:
        self.unload_model()
        self._release()

    # ---- text
    def tokenize(self, text: str, add_special: bool, parse_special: bool) -> list[int]:
        sp = self._s()
        data = text.encode("utf-8")
        flags = (int(add_special), int(parse_special))
        n_max = len(data) + 8
        with self._ffi.scope() as s:
            src = s.text(data)
            buf = s.out_i32s(n_max)
            n = int(self._lib.lm_tokenize(sp, src, len(data), buf, n_max, *flags))
            if n > n_max:
                n_max = n
                buf = s.out_i32s(n_max)
                n = int(self._lib.lm_tokenize(sp, src, len(data), buf, n_max, *flags))
            if n < 0:
                raise self._error(n, "tokenization failed")
            return self._ffi.read_i32s(buf, n)

    def token_to_piece(self, token: int) -> bytes:
        piece = self._pieces.get(token)
        if piece is None:
            piece = self._text(self._lib.lm_token_to_piece, self._s(), int(token), 0, size=64)
            self._pieces[token] = piece
        return piece

    def detokenize(self, tokens: Sequence[int]) -> bytes:
        sp = self._s()
        with self._ffi.scope() as s:
            return self._text(self._lib.lm_detokenize, sp, s.i32s(tokens), len(tokens), 0, 0,
                              size=max(64, 8 * len(tokens)))

    # ---- evaluation
    def reset(self) -> None:
        self._lib.lm_reset(self._s())

    def _with_tokens(self, fn: Any, tokens: Sequence[int], fallback: str) -> None:
        """Call fn(session, tokens, n) and raise its reason unless it returns LM_OK."""
        sp = self._s()
        with self._ffi.scope() as s:
            rc = int(fn(sp, s.i32s(tokens), len(tokens)))
        if rc != 0:
            raise self._error(rc, fallback)

    def eval_prompt(self, tokens: Sequence[int]) -> int:
        sp = self._s()
        with self._ffi.scope() as s:
            rc = int(self._lib.lm_eval_prompt(sp, s.i32s(tokens), len(tokens)))
        self._drain_log()
        if rc < 0:
            raise self._error(rc, "evaluation failed")
        return rc

    def logits(self) -> array.array:
        ptr = self._ffi.ptr(self._lib.lm_logits(self._s()))
        if ptr is None:
            raise self._error(ErrorKind.STATE, "no logits: nothing has been evaluated")
        return self._ffi.read_f32s(ptr, self._n_vocab)

    # ---- sampling
    def sampler_init(self, params: GenerationParams, seed: int) -> None:
        rc = int(self._lib.lm_sampler_init(
            self._s(), float(params.temperature), int(params.top_k), float(params.top_p),
            float(params.min_p), float(params.repeat_penalty), int(params.repeat_last_n),
            *self._ffi.i64(seed),
        ))
        if rc != 0:
            raise self._error(kind(rc, ErrorKind.ARG), "invalid sampling parameters")
        grammar = self._grammar_of(params)
        if grammar is not None:
            self._with_text(self._lib.lm_sampler_set_grammar, grammar, "the grammar was refused")

    def _grammar_of(self, params: GenerationParams) -> str | None:
        """The GBNF grammar a generation is constrained by: ``grammar``, or ``json_schema``
        converted; None for neither."""
        if params.json_schema is not None:
            return self.json_schema_to_grammar(params.json_schema)
        return params.grammar

    # ---- structured output
    def _with_text(self, fn: Any, text: str, fallback: str) -> None:
        """Call fn(session, text, len) and raise its reason unless it returns LM_OK."""
        sp = self._s()
        data = text.encode("utf-8")
        with self._ffi.scope() as s:
            rc = int(fn(sp, s.text(data), len(data)))
        if rc != 0:
            raise self._error(rc, fallback)

    def check_grammar(self, grammar: str) -> None:
        self._with_text(self._lib.lm_grammar_check, grammar, "the grammar was refused")

    def grammar_match(self, grammar: str, text: str) -> bool:
        sp = self._s()
        g, data = grammar.encode("utf-8"), text.encode("utf-8")
        with self._ffi.scope() as s:
            rc = int(self._lib.lm_grammar_match(sp, s.text(g), len(g), s.text(data), len(data)))
        if rc < 0:
            raise self._error(rc, "the grammar was refused")
        return rc == 1

    def json_schema_to_grammar(self, schema: str) -> str:
        data = schema.encode("utf-8")
        with self._ffi.scope() as s:
            src = s.text(data)
            return self._text(self._lib.lm_json_schema_to_grammar, src, len(data),
                              size=4096).decode("utf-8", "replace")

    def sampler_accept(self, tokens: Sequence[int]) -> None:
        self._with_tokens(self._lib.lm_sampler_accept, tokens, "the sampler refused the tokens")

    def next_tokens(self, max_n: int, eval_last: bool) -> tuple[list[int], str]:
        sp = self._s()
        if max_n > self._tokens_cap:  # the arena keeps the old buffer until dispose: grow fast
            self._tokens_cap = max(max_n, 2 * self._tokens_cap)
            self._tokens = self._arena.out_i32s(self._tokens_cap)
        n = int(self._lib.lm_generate(sp, max_n, int(eval_last), self._tokens, self._status,
                                      self._cancel))
        if n < 0:
            raise self._error(n, "sampling failed")
        status = self._ffi.get_i32(self._status)
        end = STEP_ENDS.get(status)
        if end is None:
            raise self._error(status, "decoding failed")
        return self._ffi.read_i32s(self._tokens, n), end

    def request_cancel(self) -> None:
        if self._release.alive:
            self._ffi.set_i32(self._cancel, 1)

    # ---- parallel sequences (a session loaded with n_parallel > 1; see backends/slots.cpp)
    def _rc(self, rc: Any, fallback: str, default: str = ErrorKind.ARG) -> int:
        rc = int(rc)
        if rc < 0:
            raise self._error(kind(rc, default), fallback)
        return rc

    def slot_prompt(self, slot: int, tokens: Sequence[int]) -> int:
        sp = self._s()
        with self._ffi.scope() as s:
            return self._rc(self._lib.lm_slot_prompt(sp, slot, s.i32s(tokens), len(tokens)),
                            "the prompt was refused")

    def slot_sampler_init(self, slot: int, params: GenerationParams, seed: int,
                          prompt: Sequence[int]) -> None:
        sp, lib = self._s(), self._lib
        self._rc(lib.lm_slot_sampler_init(
            sp, slot, float(params.temperature), int(params.top_k), float(params.top_p),
            float(params.min_p), float(params.repeat_penalty), int(params.repeat_last_n),
            *self._ffi.i64(seed)), "invalid sampling parameters")
        with self._ffi.scope() as s:
            self._rc(lib.lm_slot_sampler_accept(sp, slot, s.i32s(prompt), len(prompt)),
                     "the sampler refused the tokens")
        grammar = self._grammar_of(params)
        if grammar is not None:
            data = grammar.encode("utf-8")
            with self._ffi.scope() as s:
                self._rc(lib.lm_slot_set_grammar(sp, slot, s.text(data), len(data)),
                         "the grammar was refused")

    def slot_adapters(self, slot: int, adapters: Sequence[tuple[_Adapter, float]]) -> None:
        sp = self._s()
        with self._ffi.scope() as s:
            ptrs = s.pointers("lm_adapter *", [a.ptr for a, _ in adapters])
            scales = s.f32s([float(x) for _, x in adapters])
            self._rc(self._lib.lm_slot_adapters(sp, slot, ptrs, scales, len(adapters)),
                     "could not give the slot its adapters")

    def slot_clear(self, slot: int) -> None:
        self._rc(self._lib.lm_slot_clear(self._s(), slot), "could not clear the slot")

    def slot_tokens(self, slot: int) -> list[int]:
        sp = self._s()
        n = self._rc(self._lib.lm_slot_tokens(sp, slot, self._ffi.NULL, 0), "no such slot")
        with self._ffi.scope() as s:
            buf = s.out_i32s(max(1, n))
            self._rc(self._lib.lm_slot_tokens(sp, slot, buf, n), "no such slot")
            return self._ffi.read_i32s(buf, n)

    def step(self, slots: Sequence[int], budgets: Sequence[int],
             rounds: int) -> tuple[list[tuple[list[int], int]], bool, str]:
        """One lm_step: per slot its new tokens and status code; whether the KV cache had no
        room (nothing changed then); the reason of a slot's failure (lm_last_error)."""
        sp, n = self._s(), len(slots)
        with self._ffi.scope() as s:
            toks, counts, status = s.out_i32s(n * rounds), s.out_i32s(n), s.out_i32s(n)
            rc = int(self._lib.lm_step(sp, s.i32s(slots), s.i32s(budgets), n, rounds, toks,
                                       counts, status, self._cancel))
            self._drain_log()
            if rc == C.LM_ERR_CONTEXT:  # no room in the KV cache for this batch
                return [], True, ""
            if rc < 0:
                raise self._error(rc, "decoding failed")
            flat = self._ffi.read_i32s(toks, n * rounds)
            cnt = self._ffi.read_i32s(counts, n)
            st = self._ffi.read_i32s(status, n)
        reason = ""
        if any(x < 0 and x != C.LM_ERR_CONTEXT for x in st):
            reason = self._ffi.string(self._lib.lm_last_error()).strip()
        return [(flat[i * rounds:i * rounds + cnt[i]], st[i]) for i in range(n)], False, reason

    def slot_logits(self, slot: int) -> array.array:
        ptr = self._ffi.ptr(self._lib.lm_slot_logits(self._s(), slot))
        if ptr is None:
            raise self._error(ErrorKind.STATE, "no logits for the slot")
        return self._ffi.read_f32s(ptr, self._n_vocab)

    def slot_state_save(self, slot: int) -> bytes:
        sp = self._s()
        n = self._rc(self._lib.lm_slot_state_save(sp, slot, self._ffi.NULL, 0), "no state")
        with self._ffi.scope() as s:
            buf = s.out(n)
            got = self._rc(self._lib.lm_slot_state_save(sp, slot, buf, n), "no state",
                           ErrorKind.STATE)
            return self._ffi.read(buf, got)

    def slot_state_load(self, slot: int, tokens: Sequence[int], data: bytes) -> None:
        sp = self._s()
        with self._ffi.scope() as s:
            self._rc(self._lib.lm_slot_state_load(sp, slot, s.i32s(tokens), len(tokens),
                                                  s.view(memoryview(data)), len(data)),
                     "the state was refused", ErrorKind.STATE)

    # ---- embeddings (a context of their own in C: generation state is untouched)
    def embed(self, tokens: Sequence[Sequence[int]], pooling: str | None,
              normalize: bool) -> list[array.array]:
        sp, lib = self._s(), self._lib
        n_out, n = int(lib.lm_n_embd_out(sp)), len(tokens)
        with self._ffi.scope() as s:
            out = s.out_f32s(n * n_out)
            rc = int(lib.lm_embed(sp, s.i32s([t for seq in tokens for t in seq]),
                                  s.i32s([len(seq) for seq in tokens]), n, _pooling(pooling),
                                  int(normalize), out, n * n_out))
            if rc != 0:
                raise self._error(rc, "embedding failed")
            flat = self._ffi.read_f32s(out, n * n_out)
        self._drain_log()
        return [flat[i * n_out:(i + 1) * n_out] for i in range(n)]

    def embedding_pooling(self, pooling: str | None) -> str:
        rc = int(self._lib.lm_embed_pooling(self._s(), _pooling(pooling)))
        if rc < 0:
            raise self._error(rc, "no pooling type")
        return next(name for name, code in POOLING.items() if code == rc and name)

    def embedding_window(self) -> int:
        return int(self._lib.lm_embed_window(self._s()))

    # ---- LoRA (capabilities.lora False: every call is UNSUPPORTED, with the reason)
    def load_adapter(self, path: str) -> _Adapter:
        self._lora()
        sp = self._s()
        with self._ffi.scope() as s:
            ptr = self._ffi.ptr(self._lib.lm_adapter_load(sp, s.text(path.encode())))
        if ptr is None:
            raise self._error(ErrorKind.LOAD, "llama.cpp could not load the adapter")
        self._drain_log()
        assert self._session is not None
        return _Adapter(self._session, self._lib, ptr, path)

    def free_adapter(self, handle: _Adapter) -> None:
        self._lora()
        handle.close()

    def apply_adapters(self, adapters: Sequence[tuple[_Adapter, float]]) -> None:
        self._lora()
        sp = self._s()
        with self._ffi.scope() as s:
            ptrs = s.pointers("lm_adapter *", [a.ptr for a, _ in adapters])
            scales = s.f32s([float(x) for _, x in adapters])
            rc = int(self._lib.lm_adapters_apply(sp, ptrs, scales, len(adapters)))
        if rc != 0:
            raise self._error(kind(rc, ErrorKind.ARG), "could not apply the adapters")

    def adapter_metadata(self, handle: _Adapter) -> dict[str, str]:
        self._lora()
        lib = self._lib
        return {self._str(lib.lm_adapter_meta_key, handle.ptr, i):
                self._str(lib.lm_adapter_meta_val, handle.ptr, i)
                for i in range(int(lib.lm_adapter_meta_count(handle.ptr)))}

