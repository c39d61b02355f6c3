"""The llamart C API's contract (backends/llamart.h), natively and in Pyodide.

Calls go straight to the C functions through the backend's FFI adapter (cffi natively, the
emscripten module in Pyodide), so what is checked is the C layer itself: every failing call
sets its own reason, the reason is per thread, sizes are never error codes, capabilities and
versions come from the library. The Python side's reaction (a clear error on a version
mismatch, sessions freed when dropped) is checked too.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import llamart
from llamart import Engine, LlamartError
from llamart.bindings import _c_api
from llamart.params import GenerationParams, ModelParams
from tests.support.platform_support import threads_available

REPO = Path(__file__).resolve().parents[1]
NATIVE = sys.platform != "emscripten"
native_only = pytest.mark.skipif(not NATIVE, reason="native backend only")


@pytest.fixture
def backend(fx: dict[str, str]) -> Iterator[Any]:
    """The platform's default backend with the f32 model loaded."""
    with Engine() as engine:
        b = engine._backend
        b.load_model(fx["model_f32"], ModelParams(n_ctx=256), 1)
        yield b


def _reason(b: Any) -> str:
    return b._ffi.string(b._lib.lm_last_error())


# ---- every failing call says why, and only its own reason ----

def _failing_calls(b: Any, s: Any, scope: Any) -> dict[str, tuple[Callable[[], Any], str]]:
    """name -> (a call that fails, a pattern its reason must match)."""
    lib, ffi = b._lib, b._ffi
    n_vocab, n_embd = int(lib.lm_n_vocab(s)), int(lib.lm_n_embd_out(s))
    bad = scope.i32s([n_vocab + 5])
    buf, ibuf = scope.out(64), scope.out_i32s(16)
    return {
        "lm_tokenize": (lambda: lib.lm_tokenize(s, scope.text(b"x"), -1, ibuf, 16, 1, 0),
                        "invalid arguments to lm_tokenize"),
        "lm_token_to_piece": (lambda: lib.lm_token_to_piece(s, n_vocab, 0, buf, 64),
                              f"token {n_vocab} is outside the vocabulary"),
        "lm_detokenize": (lambda: lib.lm_detokenize(s, bad, 1, 0, 0, buf, 64),
                          f"token {n_vocab + 5} is outside"),
        "lm_eval": (lambda: lib.lm_eval(s, bad, 1), f"token {n_vocab + 5} is outside"),
        "lm_meta_key": (lambda: lib.lm_meta_key(s, 10_000, buf, 64), "index 10000 is out of range"),
        "lm_meta_val": (lambda: lib.lm_meta_val(s, -1, buf, 64), "index -1 is out of range"),
        "lm_sampler_init": (lambda: lib.lm_sampler_init(s, float("nan"), 0, 1.0, 0.0, 1.0, 0,
                                                        *ffi.i64(1)),
                            "invalid sampling parameters"),
        "lm_generate": (lambda: lib.lm_generate(s, 4, 1, ibuf, ffi.NULL, ffi.NULL),
                        "invalid arguments to lm_generate"),
        "lm_logits": (lambda: lib.lm_logits(s), "no logits: nothing has been evaluated"),
        "lm_gguf_scan_strings": (lambda: lib.lm_gguf_scan_strings(scope.view(memoryview(
            b"\x05" + b"\0" * 7 + b"ab")), 10, 1, 100, 0), "string 0 runs past the buffer"),
        "lm_session_load": (lambda: lib.lm_session_load(scope.text(b"/no/such/model.gguf"),
                                                        256, 64, 1, 0, 0),
                            "could not load the model"),
        "lm_model_desc": (lambda: lib.lm_model_desc(s, buf, -3), "negative size"),
        "lm_eval_prompt": (lambda: lib.lm_eval_prompt(s, bad, 0), "an empty prompt has no logits"),
        "lm_embed": (lambda: lib.lm_embed(s, bad, scope.i32s([0]), 1, -1, 0,
                                          scope.out_f32s(n_embd), n_embd),
                     "text 0 has no tokens"),
        "lm_adapters_apply": (lambda: lib.lm_adapters_apply(
            s, scope.pointers("lm_adapter *", [ffi.NULL]), scope.f32s([1.0]), 1),
            "adapter 0 does not belong to this session" if b.capabilities.lora
            else "LoRA adapters are not compiled into this build"),
        "lm_grammar_check": (lambda: lib.lm_grammar_check(s, *_text(scope, b'a ::= "x"')),
                             "invalid grammar: it has no 'root' rule"),
        "lm_sampler_set_grammar": (lambda: lib.lm_sampler_set_grammar(s, scope.text(b"x"), -1),
                                   "no session, or a negative length"),
        "lm_grammar_match": (lambda: lib.lm_grammar_match(s, *_text(scope, b'root ::= "x"'),
                                                          *_text(scope, b"x\0")),
                             "the text contains a NUL byte"),
        "lm_json_schema_to_grammar": (lambda: lib.lm_json_schema_to_grammar(
            *_text(scope, b'{"type": '), buf, 64), "parse error"),
    }


def _text(scope: Any, data: bytes) -> tuple[Any, int]:
    """A (pointer, length) argument pair."""
    return scope.text(data), len(data)


def test_every_failing_call_sets_its_own_reason(backend: Any) -> None:
    lib, ffi = backend._lib, backend._ffi
    s = backend._s()
    lib.lm_reset(s)  # no logits yet: lm_logits fails
    with ffi.scope() as scope:
        calls = _failing_calls(backend, s, scope)
        names = list(calls)
        # each call after another call's failure: the reason is always the latest call's
        for prev, name in zip(names[-1:] + names[:-1], names, strict=True):
            calls[prev][0]()
            assert _reason(backend) != ""
            rc = calls[name][0]()
            pattern = calls[name][1]
            if name in ("lm_logits", "lm_session_load"):
                assert ffi.ptr(rc) is None, name
            else:
                assert int(rc) < 0, (name, rc)
            reason = _reason(backend)
            assert re.search(re.escape(pattern), reason), (name, reason)
            assert calls[prev][1] == pattern or calls[prev][1] not in reason
        # a call that can fail and succeeds clears the reason
        assert int(lib.lm_n_vocab(s)) > 0 and _reason(backend) != ""
        text = scope.text(b"hello")
        assert int(lib.lm_tokenize(s, text, 5, scope.out_i32s(16), 16, 1, 0)) > 0
        assert _reason(backend) == ""


def test_a_failing_sampler_accept_and_generate_before_init(fx: dict[str, str]) -> None:
    with Engine() as engine:
        b = engine._backend
        b.load_model(fx["model_f32"], ModelParams(n_ctx=256), 1)
        lib, ffi, s = b._lib, b._ffi, b._s()
        with ffi.scope() as scope:
            toks = scope.i32s([1, 2])
            assert int(lib.lm_sampler_accept(s, toks, 2)) == -7  # LM_ERR_STATE
            assert "lm_sampler_init first" in _reason(b)
            out, status = scope.out_i32s(4), scope.out_i32s(1)
            assert int(lib.lm_generate(s, 4, 1, out, status, ffi.NULL)) == -7
            assert "no sampler" in _reason(b)
            b.sampler_init(GenerationParams(temperature=0.0), 0)
            assert int(lib.lm_generate(s, 4, 1, out, status, ffi.NULL)) == -7
            assert "nothing has been evaluated" in _reason(b)


@pytest.mark.skipif(not threads_available(), reason="needs Python threads")
def test_the_reason_is_per_thread(fx: dict[str, str]) -> None:
    """Two sessions on two threads fail in turn; each thread reads its own reason after the
    other thread's failure."""
    engines = [Engine(), Engine()]
    try:
        for e in engines:
            e.load_model(fx["model_f32"], n_ctx=256, n_threads=1)
        step = threading.Barrier(2, timeout=60)
        seen: dict[int, list[str]] = {0: [], 1: []}

        def run(k: int) -> None:
            b = engines[k]._backend
            lib, ffi, s = b._lib, b._ffi, b._s()
            with ffi.scope() as scope:
                seen[k].append(_reason(b))  # a new thread starts with no reason
                for rnd in range(3):
                    token = 100_000 + 10 * rnd + k  # a reason unique to this thread and round
                    if rnd % 2 == k:
                        step.wait()  # the other thread fails first
                    assert int(lib.lm_eval(s, scope.i32s([token]), 1)) < 0
                    if rnd % 2 != k:
                        step.wait()
                    step.wait()  # both have failed: read
                    seen[k].append(_reason(b))

        threads = [threading.Thread(target=run, args=(k,)) for k in (0, 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        for k in (0, 1):
            assert seen[k][0] == ""
            assert len(seen[k]) == 4
            for rnd, reason in enumerate(seen[k][1:]):
                assert f"token {100_000 + 10 * rnd + k} is outside" in reason, (k, rnd, reason)
                assert f"token {100_000 + 10 * rnd + (1 - k)} " not in reason
    finally:
        for e in engines:
            e.dispose()


# ---- sizes are not error codes ----

def test_sizes_are_returned_the_snprintf_way(backend: Any) -> None:
    lib, ffi, s = backend._lib, backend._ffi, backend._s()
    with ffi.scope() as scope:
        # "" is 0, not an error (it was -1 = LM_ERR_ARG before)
        assert int(lib.lm_detokenize(s, scope.i32s([]), 0, 0, 0, ffi.NULL, 0)) == 0
        assert int(lib.lm_detokenize(s, scope.i32s([]), 0, 0, 0, scope.out(8), 8)) == 0
        assert backend.detokenize([]) == b""
        # the full length, whatever the buffer; written (NUL-terminated) only when it fits
        desc = backend._str(lib.lm_model_desc, s)
        n = len(desc.encode())
        assert n > 8 and int(lib.lm_model_desc(s, ffi.NULL, 0)) == n
        small = scope.out(5)
        assert int(lib.lm_model_desc(s, small, 5)) == n
        assert ffi.read(small, 5) == desc.encode()[:4] + b"\0"
        # token counts: the count needed when n_max is too small (never a negative size)
        text = b"hello world hello world"
        needed = int(lib.lm_tokenize(s, scope.text(text), len(text), scope.out_i32s(1), 1, 1, 0))
        assert needed == len(backend.tokenize(text.decode(), True, False)) > 1
        # a long piece of text is retried with the length the first call gave
        long = "héllo wörld " * 200
        tokens = backend.tokenize(long, False, False)
        assert len(tokens) > 200 and backend.detokenize(tokens).decode() == long


@native_only
def test_empty_metadata_values_copy_out_as_empty(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import gguf

    from llamart.testing.models import make_model

    # gguf's add_string drops empty values: write them as they are
    monkeypatch.setattr(gguf.GGUFWriter, "add_string", lambda self, key, val: self.add_key_value(
        key, val, gguf.GGUFValueType.STRING))
    path = make_model(tmp_path / "empty_meta.gguf",
                      extra_kv={"general.description": "", "llamart.test.empty": ""})
    with Engine() as engine:
        engine.load_model(path, n_ctx=256, n_threads=1)
        meta = engine.metadata
        assert meta["general.description"] == "" and meta["llamart.test.empty"] == ""
        assert meta["general.architecture"] == "llama"
        assert engine.complete("x", max_tokens=2, temperature=0.0) is not None


# ---- capabilities and versions come from the library ----

def test_capabilities_come_from_the_library(backend: Any) -> None:
    bits = int(backend._lib.lm_capabilities())
    caps = backend.capabilities
    assert bits & _c_api.CAP_EMBEDDINGS and caps.embeddings  # every build
    assert bits & _c_api.CAP_GRAMMAR and caps.grammar and bits & _c_api.CAP_JSON_SCHEMA
    if NATIVE:
        assert bits & _c_api.CAP_LORA and caps.lora and caps.lora_reason is None
        assert caps.threads and caps.mmap
        assert caps.max_threads is None and int(backend._lib.lm_max_threads()) == 0
    else:  # a module: no LoRA or mmap; embeddings and grammar; threads in the pthreads build
        import llamart_wasm  # type: ignore[import-not-found]

        threaded = llamart_wasm.llamartBuild == "threads"
        assert bits == (_c_api.CAP_EMBEDDINGS | _c_api.CAP_GRAMMAR | _c_api.CAP_JSON_SCHEMA
                        | (_c_api.CAP_THREADS if threaded else 0))
        assert caps.lora is False and caps.lora_reason == _c_api.LORA_REASON
        assert caps.threads == threaded and not caps.mmap
        assert caps.max_threads >= 1 and (threaded or caps.max_threads == 1)
        with backend._ffi.scope() as scope:
            raw = backend._lib.lm_adapter_load(backend._s(), scope.text(b"/x.gguf"))
            assert backend._ffi.ptr(raw) is None
            assert "not compiled into this build" in _reason(backend)
            assert int(backend._lib.lm_adapters_apply(backend._s(), 0, 0, 1)) == -8


@native_only
def test_a_native_build_without_lora_does_not_blame_webassembly() -> None:
    """The reason for ``lora=False`` names the library, not WebAssembly, on any other build
    (here the native library with its LM_CAP_LORA bit masked)."""
    from llamart.bindings.client import CApiClient
    from llamart.bindings.ffi_cffi import CffiFfi
    from llamart.errors import UnsupportedCapabilityError

    class NoLora:
        def __init__(self, lib: Any) -> None:
            self._lib = lib

        def __getattr__(self, name: str) -> Any:
            return getattr(self._lib, name)

        def lm_capabilities(self) -> int:
            return int(self._lib.lm_capabilities()) & ~_c_api.CAP_LORA

    class NativeWithoutLora(CApiClient):
        name = "native"

    ffi = CffiFfi()
    ffi.lib = NoLora(ffi.lib)
    with Engine(NativeWithoutLora(ffi, "libllamart-nolora.so"), strict=True) as engine:
        reason = engine.capabilities.lora_reason
        assert engine.capabilities.lora is False and reason is not None
        assert "WebAssembly" not in reason and "libllamart-nolora.so" in reason
        assert "built without LoRA" in reason
        with pytest.raises(UnsupportedCapabilityError, match="built without LoRA"):
            engine.set_lora("x.gguf")


def test_the_library_is_this_version(backend: Any) -> None:
    from llamart import _version

    assert backend._ffi.string(backend._lib.lm_version()) == _version.__version__
    assert llamart.__version__ == _version.__version__
    assert int(backend._lib.lm_abi_version()) == _version.C_ABI_VERSION


@pytest.mark.parametrize("attr, value", [("__version__", "9.9.9"), ("C_ABI_VERSION", 999)])
def test_a_version_mismatch_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, attr: str,
                                             value: Any) -> None:
    from llamart import _version

    monkeypatch.setattr(_version, attr, value)
    with pytest.raises(LlamartError, match="backend is not available") as info:
        Engine()
    message = str(info.value)
    assert f"llamart {llamart.__version__} (C ABI" in message  # what the library is
    assert str(value) in message and "rebuild" in message  # what this package wants, and how
    assert isinstance(info.value.__cause__, ImportError)


@native_only
def test_the_c_constants_are_the_headers() -> None:
    """_c_constants.py is what its generator makes of backends/llamart.h, and cffi (which parses
    the installed header) sees the same numbers."""
    from llamart.bindings import _c_constants, _cdefs
    from llamart.bindings.ffi_cffi import library

    source = REPO / "backends" / "llamart.h"
    assert Path(_c_constants.__file__).read_text(encoding="utf-8") == \
        _cdefs.constants_source(source), "run python -m llamart.bindings._cdefs"
    constants = _cdefs.header_constants(source)
    assert len(constants) >= 20 and constants["LM_ERR_BUFFER"] == -5
    _, lib, _ = library()
    for name, value in constants.items():
        assert getattr(lib, name) == getattr(_c_constants, name) == value, name


def test_the_c_constants_mapping() -> None:
    """What each constant means to Python (every runtime)."""
    from llamart.bindings import _c_constants as C
    from llamart.bindings.base import ErrorKind, StepEnd
    from llamart.engine import embedding
    from llamart.gguf import reader

    named = vars(C)
    errors = {v for n, v in named.items() if n.startswith("LM_ERR_")}
    assert set(_c_api.CODES) == errors and all(v < 0 for v in errors)
    assert (_c_api.CODES[C.LM_ERR_CONTEXT], _c_api.CODES[C.LM_ERR_STATE],
            _c_api.CODES[C.LM_ERR_GRAMMAR]) == (ErrorKind.CONTEXT, ErrorKind.STATE,
                                                ErrorKind.GRAMMAR)
    assert _c_api.STEP_ENDS == {C.LM_OK: StepEnd.FULL, C.LM_EOG: StepEnd.EOG,
                                C.LM_CANCELLED: StepEnd.CANCELLED,
                                C.LM_ERR_CONTEXT: StepEnd.CONTEXT}
    caps = [v for n, v in named.items() if n.startswith("LM_CAP_")]
    assert len(caps) == 6 and len(set(caps)) == 6 and all(v & (v - 1) == 0 for v in caps)
    assert (_c_api.CAP_LORA, _c_api.CAP_JSON_SCHEMA) == (C.LM_CAP_LORA, C.LM_CAP_JSON_SCHEMA)
    assert _c_api.POOLING == {None: C.LM_POOLING_MODEL, "mean": C.LM_POOLING_MEAN,
                              "cls": C.LM_POOLING_CLS, "last": C.LM_POOLING_LAST}
    assert embedding.POOLINGS == _c_api.POOLING_NAMES == ("mean", "cls", "last")
    # the GGUF reader takes the C string scanner as a callable and reads its "strings run past
    # the buffer" code from the same generated module (it imports no backend)
    assert reader._SCAN_NEEDS_MORE == C.LM_ERR_BUFFER


def test_the_library_speaks_the_c_constants(backend: Any) -> None:
    """The loaded library (native or WebAssembly) returns only the constants Python knows."""
    from llamart.bindings import _c_constants as C

    known = sum(v for n, v in vars(C).items() if n.startswith("LM_CAP_"))
    assert int(backend._lib.lm_capabilities()) & ~known == 0
    s = backend._s()
    assert int(backend._lib.lm_embed_pooling(s, C.LM_POOLING_MODEL)) == C.LM_POOLING_MEAN
    for name in ("mean", "cls", "last"):
        code = _c_api.POOLING[name]
        assert int(backend._lib.lm_embed_pooling(s, code)) == code
    assert int(backend._lib.lm_embed_pooling(s, 99)) == C.LM_ERR_ARG


@native_only
def test_one_version_source() -> None:
    pyproject = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    assert 'dynamic = ["version"]' in pyproject
    assert 'metadata.version.input = "llamart/_version.py"' in pyproject
    assert not re.search(r"^version\s*=", pyproject, re.M)
    assert "_version.py" in (REPO / "backends" / "core.cmake").read_text(encoding="utf-8")


# ---- ownership: a dropped backend frees its session ----

_DROP = """
import gc, sys
from llamart import Engine

model, lora_a, lora_b = sys.argv[1:4]

# 1. an Engine with two active adapters, dropped without dispose()
e = Engine("native")
e.load_model(model, n_ctx=256, n_threads=1)
e.set_lora(lora_a, 0.5)
e.set_lora(lora_b, 1.0)
assert e.complete("Once", max_tokens=4, temperature=0.0)
fin = e._backend._session._finalizer
del e
gc.collect()
assert not fin.alive, "the session was not freed"

# 2. a backend dropped while an adapter handle outlives it: freeing the handle later is a no-op
b = Engine("native")._backend
from llamart.params import ModelParams
b.load_model(model, ModelParams(n_ctx=256), 1)
h = b.load_adapter(lora_a)
b.apply_adapters([(h, 1.0)])
fin = b._session._finalizer
del b
gc.collect()
assert not fin.alive
h.close()
h.close()

# 3. sessions still alive at exit are freed by the finalizers, adapters active
keep = Engine("native")
keep.load_model(model, n_ctx=256, n_threads=1)
keep.set_lora(lora_a, 1.0)
cycle = [keep]
cycle.append(cycle)  # in a reference cycle: only the collector or exit frees it
print("ok")
"""


@native_only
def test_dropped_sessions_are_freed_adapters_first(fx: dict[str, str]) -> None:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(_DROP), fx["model_f32"],
                          fx["lora_a"], fx["lora_b"]],
                         capture_output=True, text=True, timeout=300,
                         env={**os.environ, "GGML_NO_BACKTRACE": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "ok"
