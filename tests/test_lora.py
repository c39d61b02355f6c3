"""LoRA adapters against real llama.cpp, on whatever the platform's default backend can do.

Every test needs ``engine.capabilities.lora`` (never the platform name): where it is False
(WebAssembly) the test is skipped with that reason; the documented no-op behaviour there is
tested by tests/test_lora_unsupported.py. No numpy or gguf at import: this file also runs in
Pyodide (the aLoRA test writes its adapters with them, only where adapters apply).
"""

from __future__ import annotations

import math
import os
import shutil
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from llamart import (
    AdapterError,
    Engine,
)

PROMPT = "Once upon a time"


def require_lora(engine: Engine) -> None:
    """Skip (with the backend's own reason) where adapters cannot be applied."""
    if not engine.capabilities.lora:
        pytest.skip(f"capabilities.lora is False: {engine.capabilities.lora_reason}")

N_CTX = 256
Record = Callable[[str, object], None]
# bad_* fixtures and what the refusal must say (validator or llama.cpp); None: any reason
BAD_ADAPTERS = {
    "bad_shape": "incorrect shape",
    "bad_arch": "architecture",
    "bad_unknown_tensor": "does not exist in the base model",
    "bad_model_as_adapter": "not a LoRA adapter",
    "bad_missing_half": "missing its lora_b half",
    "bad_garbage": "not a GGUF file",
    "bad_empty": "empty",
    "bad_truncated": "past end of file",
    "bad_lying_n_tensors": "tensors",
    "bad_lying_n_kv": "metadata keys",
    "bad_lying_string": "length",
    "bad_lying_array": "array",
    "bad_lying_dims": "past end of file",
}


@pytest.fixture
def loaded(engine: Engine, fx: dict[str, str]) -> Engine:
    engine.load_model(fx["model_f32"], n_ctx=N_CTX, n_threads=1)
    return engine


def _logits(e: Engine) -> bytes:
    return e.logits(PROMPT).tobytes()


def _greedy(e: Engine) -> str:
    return e.complete(PROMPT, max_tokens=24, temperature=0.0)


def _fresh(fx: dict[str, str], loras: dict[str, float] | None = None) -> tuple[bytes, str]:
    """Logits and greedy text of a new engine loaded with ``loras`` (set in that order)."""
    with Engine() as e:
        e.load_model(fx["model_f32"], n_ctx=N_CTX, n_threads=1)
        for path, scale in (loras or {}).items():
            assert e.set_lora(path, scale) is True
        return _logits(e), _greedy(e)


def _close(a: bytes, b: bytes, tol: float = 1e-4) -> bool:
    fa = memoryview(a).cast("f")
    fb = memoryview(b).cast("f")
    if len(fa) != len(fb):
        return False
    return all(abs(x - y) <= tol * (1 + abs(y)) for x, y in zip(fa, fb, strict=True))


@contextmanager
def _no_warnings() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


# ---- capability report ----

def test_capability_is_reported(engine: Engine, record_property: Record) -> None:
    caps = engine.capabilities
    assert isinstance(caps.lora, bool)
    if caps.lora:
        assert caps.lora_reason is None


# ---- applying, scaling, stacking ----

def test_set_lora_changes_logits(loaded: Engine, fx: dict[str, str],
                                 record_property: Record) -> None:
    base = _logits(loaded)
    a = fx["lora_a"]
    require_lora(loaded)
    with _no_warnings():
        assert loaded.set_lora(a, 1.0) is True
    assert loaded.loras == {a: 1.0}
    assert _logits(loaded) != base


def test_scale_update_does_not_reread_the_file(loaded: Engine, fx: dict[str, str],
                                              tmp_path: Any, record_property: Record) -> None:
    base = _logits(loaded)
    path = str(tmp_path / "adapter.gguf")
    shutil.copyfile(fx["lora_a"], path)
    require_lora(loaded)
    assert loaded.set_lora(path, 1.0) is True
    full = _logits(loaded)
    os.rename(path, path + ".moved")  # a re-read would now fail with FileNotFoundError
    assert loaded.set_lora(path, 0.5) is True
    half = _logits(loaded)
    assert loaded.loras == {path: 0.5}
    assert half not in (base, full)
    os.rename(path + ".moved", path)
    assert half == _fresh(fx, {path: 0.5})[0]  # as if loaded at 0.5 from the start


def test_stacking_and_order(loaded: Engine, fx: dict[str, str],
                            record_property: Record) -> None:
    base = _logits(loaded)
    a, b, c = fx["lora_a"], fx["lora_b"], fx["lora_c"]
    require_lora(loaded)
    only_a = _fresh(fx, {a: 1.0})[0]
    only_b = _fresh(fx, {b: 1.0})[0]
    assert loaded.set_lora(a, 1.0) and loaded.set_lora(b, 1.0)
    both = _logits(loaded)
    assert both not in (base, only_a, only_b)
    assert loaded.set_lora(c, 0.5) and loaded.set_lora(a, 0.25)  # rescaling keeps a first
    assert list(loaded.loras.items()) == [(a, 0.25), (b, 1.0), (c, 0.5)]
    # the same set in another order gives the same model (up to float summation order)
    assert _close(_logits(loaded), _fresh(fx, {c: 0.5, b: 1.0, a: 0.25})[0])


def test_remove_lora_returns_to_the_other_adapter(loaded: Engine, fx: dict[str, str],
                                                  record_property: Record) -> None:
    a, b = fx["lora_a"], fx["lora_b"]
    require_lora(loaded)
    only_b = _fresh(fx, {b: 1.0})[0]
    loaded.set_lora(a, 1.0)
    loaded.set_lora(b, 1.0)
    assert loaded.remove_lora(a) is True
    assert loaded.loras == {b: 1.0}
    assert _logits(loaded) == only_b  # bit-identical to b alone
    assert loaded.remove_lora(a) is False  # no longer set: a no-op
    assert loaded.remove_lora(fx["lora_c"]) is False  # never set
    assert loaded.loras == {b: 1.0} and _logits(loaded) == only_b


def test_clear_loras_equals_a_fresh_engine(loaded: Engine, fx: dict[str, str],
                                           record_property: Record) -> None:
    base = _logits(loaded)
    fresh_logits, fresh_text = _fresh(fx)
    assert base == fresh_logits
    require_lora(loaded)
    for name, scale in (("lora_a", 1.0), ("lora_b", -0.5), ("lora_c", 2.0)):
        loaded.set_lora(fx[name], scale)
    assert _logits(loaded) != base
    assert loaded.clear_loras() is None
    assert loaded.loras == {}
    assert _logits(loaded) == fresh_logits
    assert _greedy(loaded) == fresh_text
    loaded.clear_loras()  # nothing set: a no-op (the cache, computed without adapters, stays)
    assert _close(_logits(loaded), fresh_logits)


def test_scale_zero_keeps_it_registered(loaded: Engine, fx: dict[str, str],
                                        record_property: Record) -> None:
    base = _logits(loaded)
    a = fx["lora_a"]
    require_lora(loaded)
    assert loaded.set_lora(a, 0.0) is True
    assert loaded.loras == {a: 0.0}
    assert _logits(loaded) == base
    assert loaded.set_lora(a, 1.0) is True
    assert _logits(loaded) != base
    assert loaded.set_lora(a, 0) is True  # back to zero: base again
    assert _logits(loaded) == base and loaded.loras == {a: 0.0}


def test_negative_scale(loaded: Engine, fx: dict[str, str], record_property: Record) -> None:
    base = _logits(loaded)
    a = fx["lora_a"]
    require_lora(loaded)
    loaded.set_lora(a, 1.0)
    plus = _logits(loaded)
    assert loaded.set_lora(a, -1.0) is True
    assert loaded.loras == {a: -1.0}
    assert _logits(loaded) not in (base, plus)


def test_zero_weight_adapter_gives_base_logits(loaded: Engine, fx: dict[str, str],
                                               record_property: Record) -> None:
    base = _logits(loaded)
    z = fx["lora_zero"]
    require_lora(loaded)
    assert loaded.set_lora(z, 3.0) is True
    assert _logits(loaded) == base  # B = 0: the delta is exactly zero


# ---- argument checks: identical on every backend ----

@pytest.mark.parametrize("scale, exc", [
    (float("nan"), ValueError), (float("inf"), ValueError), (-math.inf, ValueError),
    ("0.5", TypeError), (None, TypeError), (True, TypeError), ([1.0], TypeError),
])
def test_bad_scale(loaded: Engine, fx: dict[str, str], scale: Any, exc: type) -> None:
    base = _logits(loaded)
    with _no_warnings():  # the check comes before any LoRA-unsupported warning
        with pytest.raises(exc, match="scale"):
            loaded.set_lora(fx["lora_a"], scale)
    assert loaded.loras == {} and _logits(loaded) == base


@pytest.mark.parametrize("op", ["set_lora", "remove_lora", "lora_metadata"])
@pytest.mark.parametrize("path", [None, 1, b"/tmp/x.gguf", ["a.gguf"]])
def test_bad_path_type(loaded: Engine, op: str, path: Any) -> None:
    with _no_warnings(), pytest.raises(TypeError, match="path"):
        getattr(loaded, op)(path)
    assert loaded.loras == {}


def test_bad_scale_keeps_the_current_set(loaded: Engine, fx: dict[str, str],
                                         record_property: Record) -> None:
    a = fx["lora_a"]
    require_lora(loaded)
    loaded.set_lora(a, 0.5)
    before = _logits(loaded)
    with pytest.raises(ValueError):
        loaded.set_lora(a, float("nan"))
    assert loaded.loras == {a: 0.5} and _logits(loaded) == before


# ---- generation with adapters ----

def test_generation_after_set_lora_equals_a_fresh_engine(loaded: Engine, fx: dict[str, str],
                                                         record_property: Record) -> None:
    base_text = _greedy(loaded)  # fills the KV cache under the base model
    a, b = fx["lora_a"], fx["lora_b"]
    require_lora(loaded)
    loaded.set_lora(a, 0.7)
    text = _greedy(loaded)
    assert text != base_text
    # the engine's cache now holds prompt + reply under {a: 0.7}: logits(PROMPT) reuses that
    # prefix (same set), so it matches a fresh engine within float noise, not bit for bit
    logits, fresh = _logits(loaded), _fresh(fx, {a: 0.7})
    assert text == fresh[1] and _close(logits, fresh[0])
    loaded.set_lora(b, 1.5)  # a new set: nothing reused, bit-identical to a fresh engine
    assert (_logits(loaded), _greedy(loaded)) == _fresh(fx, {a: 0.7, b: 1.5})
    loaded.remove_lora(a)
    assert (_logits(loaded), _greedy(loaded)) == _fresh(fx, {b: 1.5})


def test_unload_and_reload_forget_adapters(loaded: Engine, fx: dict[str, str],
                                           record_property: Record) -> None:
    base = _logits(loaded)
    a = fx["lora_a"]
    require_lora(loaded)
    loaded.set_lora(a, 1.0)
    loaded.unload_model()
    assert loaded.loras == {}
    loaded.load_model(fx["model_f32"], n_ctx=N_CTX, n_threads=1)
    assert loaded.loras == {} and _logits(loaded) == base
    loaded.set_lora(a, 1.0)
    loaded.load_model(fx["model_f32"], n_ctx=N_CTX, n_threads=1)  # a reload drops them too
    assert loaded.loras == {} and _logits(loaded) == base
    assert loaded.set_lora(a, 1.0) is True  # and they can be set again
    assert _logits(loaded) != base


def test_set_lora_needs_a_model(engine: Engine, fx: dict[str, str],
                                record_property: Record) -> None:
    require_lora(engine)
    from llamart import EngineStateError

    with pytest.raises(EngineStateError, match="no model"):
        engine.set_lora(fx["lora_a"])
    assert engine.remove_lora(fx["lora_a"]) is False
    engine.clear_loras()
    assert engine.loras == {}


# ---- bad adapter files ----

def test_every_bad_fixture_is_covered(fx: dict[str, str]) -> None:
    assert sorted(k for k in fx if k.startswith("bad_")) == sorted(BAD_ADAPTERS)


@pytest.mark.parametrize("name", sorted(BAD_ADAPTERS))
def test_bad_adapter(loaded: Engine, fx: dict[str, str], name: str,
                     record_property: Record) -> None:
    path = fx[name]
    a = fx["lora_a"]
    require_lora(loaded)
    loaded.set_lora(a, 0.5)
    before = _logits(loaded)
    with pytest.raises(AdapterError) as info:
        loaded.set_lora(path, 1.0)
    err = info.value
    assert err.path == path and str(err).startswith(f"{path}: ")
    assert BAD_ADAPTERS[name] in err.reason, err.reason
    assert loaded.loras == {a: 0.5}
    assert _logits(loaded) == before
    assert loaded.set_lora(a, 1.0) is True  # still fully usable


# what llama.cpp itself says when the Python checks are bypassed (they normally refuse first)
LLAMA_CPP_REFUSALS = {
    "bad_shape": "has incorrect shape",
    "bad_arch": "arch mismatch",
    "bad_unknown_tensor": "does not exist in base model",
    "bad_model_as_adapter": "expect general.type to be 'adapter'",
    "bad_missing_half": "missing one component",
}


@pytest.mark.parametrize("name", sorted(LLAMA_CPP_REFUSALS))
def test_llama_cpp_refusal_reaches_the_caller(loaded: Engine, fx: dict[str, str], name: str,
                                              monkeypatch: pytest.MonkeyPatch,
                                              record_property: Record) -> None:
    from llamart import gguf
    from llamart.gguf import model_files

    monkeypatch.setattr(model_files, "validate_adapter",
                        lambda path, base=None, **_: gguf.read_header(path))
    path, a = fx[name], fx["lora_a"]
    require_lora(loaded)
    loaded.set_lora(a, 0.5)
    before = _logits(loaded)
    with pytest.raises(AdapterError) as info:
        loaded.set_lora(path)
    err = info.value
    assert err.path == path and str(err).startswith(f"{path}: ")
    assert LLAMA_CPP_REFUSALS[name] in err.reason, err.reason
    assert loaded.loras == {a: 0.5} and _logits(loaded) == before


def test_missing_adapter_file(loaded: Engine, fx: dict[str, str],
                              record_property: Record) -> None:
    missing = fx["lora_a"] + ".missing.gguf"
    base = _logits(loaded)
    require_lora(loaded)
    with pytest.raises(FileNotFoundError) as info:
        loaded.set_lora(missing)
    assert info.value.filename == missing
    assert loaded.loras == {} and _logits(loaded) == base


def test_adapter_for_another_model_is_refused(engine: Engine, fx: dict[str, str],
                                              record_property: Record) -> None:
    # lora_a was made for the 64-wide model: the 32-wide one must refuse it by shape
    engine.load_model(fx["model_n32"], n_ctx=N_CTX, n_threads=1)
    base = _logits(engine)
    require_lora(engine)
    with pytest.raises(AdapterError, match="incorrect shape") as info:
        engine.set_lora(fx["lora_a"])
    assert info.value.path == fx["lora_a"]
    assert engine.loras == {} and _logits(engine) == base


def test_alora_adapter_is_refused_by_set_lora(loaded: Engine, fx: dict[str, str], tmp_path,
                                             record_property: Record) -> None:
    """An activated LoRA would act from the first token here: set_lora refuses it (AdapterError
    naming aLoRA) and leaves the adapter set and the logits as they were. The same adapter
    without its invocation tokens applies (so the refusal is about aLoRA alone)."""
    require_lora(loaded)  # native: numpy and gguf are there to write the adapters
    from llamart.testing.models import make_adapter

    plain = make_adapter(tmp_path / "plain.gguf", base=fx["model_f32"], rank=4, seed=9)
    alora = make_adapter(tmp_path / "alora.gguf", base=fx["model_f32"], rank=4, seed=9,
                         alora_tokens=[300, 301, 302])
    a = fx["lora_a"]
    loaded.set_lora(a, 0.5)
    before = _logits(loaded)
    with pytest.raises(AdapterError, match="aLoRA") as info:
        loaded.set_lora(alora, 1.0)
    assert info.value.path == alora and "3 invocation tokens" in str(info.value)
    assert loaded.loras == {a: 0.5}
    assert _logits(loaded) == before
    assert loaded.set_lora(plain, 1.0) is True  # the same weights without aLoRA apply
    assert loaded.loras == {a: 0.5, plain: 1.0} and _logits(loaded) != before


# ---- metadata ----

def test_lora_metadata(loaded: Engine, fx: dict[str, str], record_property: Record) -> None:
    a = fx["lora_a"]
    meta = loaded.lora_metadata(a)
    assert meta["alpha"] == 16.0 and meta["rank"] == 8
    assert sorted(meta["targets"]) == ["attn_q", "attn_v"]
    assert meta["task_name"] == "test-a" and meta["architecture"] == "llama"
    assert meta["loaded"] is False and meta["scale"] is None
    b = loaded.lora_metadata(fx["lora_b"])
    assert (b["alpha"], b["rank"]) == (0.0, 4)
    assert sorted(b["targets"]) == ["ffn_down", "ffn_gate", "ffn_up"]
    with pytest.raises(AdapterError, match="not a GGUF"):
        loaded.lora_metadata(fx["bad_garbage"])
    with pytest.raises(FileNotFoundError):
        loaded.lora_metadata(a + ".missing")
    require_lora(loaded)
    loaded.set_lora(a, 0.7)
    meta = loaded.lora_metadata(a)
    assert meta["loaded"] is True and meta["scale"] == 0.7
    assert float(meta["metadata"]["adapter.lora.alpha"]) == 16.0  # llama.cpp's view


# ---- warnings and strict mode ----

def test_every_call_warns_when_unsupported(loaded: Engine, fx: dict[str, str],
                                           record_property: Record) -> None:
    a = fx["lora_a"]
    calls = [lambda: loaded.set_lora(a, 0.7), lambda: loaded.set_lora(a, 0.7),
             lambda: loaded.remove_lora(a), loaded.clear_loras]
    require_lora(loaded)
    with _no_warnings():
        assert [call() for call in calls] == [True, True, True, None]
    assert loaded.loras == {}


def test_strict_engine(fx: dict[str, str], record_property: Record) -> None:
    a = fx["lora_a"]
    with Engine(strict=True) as e:
        assert e.strict
        e.load_model(fx["model_f32"], n_ctx=N_CTX, n_threads=1)
        base = _logits(e)
        with pytest.raises(ValueError, match="scale"):
            e.set_lora(a, float("nan"))  # arguments first, in both modes
        require_lora(e)
        with _no_warnings():
            assert e.set_lora(a, 1.0) is True
            assert e.remove_lora(a) is True
            e.clear_loras()
        assert e.loras == {} and _logits(e) == base
