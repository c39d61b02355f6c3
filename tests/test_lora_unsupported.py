"""Where ``capabilities.lora`` is False (the WebAssembly backend, and FakeBackend(lora=False)
everywhere), every LoRA call checks its arguments as natively and is then a documented no-op:
it returns False (``clear_loras``: None), warns LoraUnsupportedWarning once with the backend's
reason, leaves ``loras == {}`` and the logits the base model's. With ``Engine(strict=True)`` it
raises UnsupportedCapabilityError instead. tests/test_lora.py checks what the calls do where
LoRA is supported; this file is its other half, one case per situation it covers.

The default backend's runs record the behaviour for the platform matrix (tests/matrix.py).
No numpy or gguf: this file also runs in Pyodide.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from llamart import Engine, LoraUnsupportedWarning, UnsupportedCapabilityError
from llamart.testing import FakeBackend

PROMPT = "Once upon a time"
N_CTX = 256
Calls = list[Callable[[], Any]]
BAD_ADAPTERS = ("bad_shape", "bad_arch", "bad_unknown_tensor", "bad_model_as_adapter",
                "bad_missing_half", "bad_garbage", "bad_empty", "bad_truncated",
                "bad_lying_n_tensors", "bad_lying_n_kv", "bad_lying_string", "bad_lying_array",
                "bad_lying_dims")
LLAMA_CPP_REFUSED = ("bad_shape", "bad_arch", "bad_unknown_tensor", "bad_model_as_adapter",
                     "bad_missing_half")  # test_lora.py bypasses the validator for these


@dataclass(frozen=True)
class Case:
    """One situation: the LoRA calls made (from the engine, the fixtures and a temp folder),
    what the platform matrix says, and the model loaded first (None: no model)."""

    calls: Callable[[Engine, dict[str, str], Path], Calls]
    what: str
    model: str | None = "model_f32"


CASES: dict[str, Case] = {
    "set_lora": Case(lambda e, fx, _: [lambda: e.set_lora(fx["lora_a"], 1.0)],
                     "set_lora returned False, LoraUnsupportedWarning, base logits"),
    "scale_update": Case(lambda e, _, tmp: [lambda: e.set_lora(str(tmp / "adapter.gguf"), 1.0),
                                            lambda: e.set_lora(str(tmp / "adapter.gguf"), 0.5)],
                         "scale updates returned False, LoraUnsupportedWarning each call"),
    "refused_scale_then_set": Case(lambda e, fx, _: [lambda: e.set_lora(fx["lora_a"], 0.5)],
                                   "NaN refused with ValueError, then set_lora returned False"),
    "stacking": Case(lambda e, fx, _: [lambda: e.set_lora(fx["lora_a"], 1.0),
                                       lambda: e.set_lora(fx["lora_b"], 1.0)],
                     "stacking: each set_lora returned False, loras stayed {}"),
    "remove_lora": Case(lambda e, fx, _: [lambda: e.set_lora(fx["lora_b"], 1.0),
                                          lambda: e.remove_lora(fx["lora_a"]),
                                          lambda: e.remove_lora(fx["lora_b"])],
                        "remove_lora returned False, LoraUnsupportedWarning"),
    "clear_loras": Case(lambda e, fx, _: [lambda: e.set_lora(fx["lora_a"], 1.0), e.clear_loras],
                        "clear_loras returned None, LoraUnsupportedWarning"),
    "scale_zero": Case(lambda e, fx, _: [lambda: e.set_lora(fx["lora_a"], 0.0)],
                       "set_lora(scale=0) returned False, loras stayed {}"),
    "negative_scale": Case(lambda e, fx, _: [lambda: e.set_lora(fx["lora_a"], -1.0)],
                           "set_lora(scale=-1) returned False"),
    "zero_weight_adapter": Case(lambda e, fx, _: [lambda: e.set_lora(fx["lora_zero"], 3.0)],
                                "set_lora returned False"),
    "generation": Case(lambda e, fx, _: [lambda: e.set_lora(fx["lora_a"], 0.7)],
                       "generation unchanged: set_lora returned False"),
    "unload_and_reload": Case(lambda e, fx, _: [lambda: e.set_lora(fx["lora_a"], 1.0)],
                              "set_lora returned False; loras {} across unload/reload"),
    "no_model": Case(lambda e, fx, _: [lambda: e.set_lora(fx["lora_a"])],
                     "set_lora without a model returned False (no model check)", model=None),
    "missing_file": Case(lambda e, fx, _: [lambda: e.set_lora(fx["lora_a"] + ".missing.gguf")],
                         "file not checked: set_lora returned False, LoraUnsupportedWarning"),
    "adapter_for_another_model": Case(lambda e, fx, _: [lambda: e.set_lora(fx["lora_a"])],
                                      "shape not checked: set_lora returned False",
                                      model="model_n32"),
    "every_call": Case(lambda e, fx, _: [lambda: e.set_lora(fx["lora_a"], 0.7),
                                         lambda: e.set_lora(fx["lora_a"], 0.7),
                                         lambda: e.remove_lora(fx["lora_a"]), e.clear_loras],
                       "one LoraUnsupportedWarning per call (set, set, remove, clear)"),
    **{f"bad_adapter[{name}]": Case(
        lambda e, fx, _, name=name: [lambda: e.set_lora(fx[name], 1.0)],
        "file not read: set_lora returned False, LoraUnsupportedWarning")
       for name in BAD_ADAPTERS},
    **{f"llama_cpp_refusal[{name}]": Case(
        lambda e, fx, _, name=name: [lambda: e.set_lora(fx[name])],
        "llama.cpp never sees the file: set_lora returned False")
       for name in LLAMA_CPP_REFUSED},
}


def _engine(which: str, strict: bool = False) -> Engine:
    return Engine(FakeBackend(lora=False) if which == "fake" else None, strict=strict)


@pytest.fixture(params=["default", "fake"])
def engine_without_lora(request: pytest.FixtureRequest) -> Iterator[Engine]:
    with _engine(request.param) as e:
        if e.capabilities.lora:
            pytest.skip(f"the {e.capabilities.backend} backend applies LoRA (tests/test_lora.py)")
        yield e


def _logits(e: Engine) -> bytes:
    return e.logits(PROMPT).tobytes()


def _greedy(e: Engine) -> str:
    return e.complete(PROMPT, max_tokens=24, temperature=0.0)


@pytest.mark.parametrize("case", sorted(CASES))
def test_lora_call_is_a_documented_noop(engine_without_lora: Engine, case: str,
                                        fx: dict[str, str], tmp_path: Path,
                                        record_property: Callable[[str, object], None]) -> None:
    e, spec = engine_without_lora, CASES[case]
    (tmp_path / "adapter.gguf").write_bytes(Path(fx["lora_a"]).read_bytes())
    if spec.model:
        e.load_model(fx[spec.model], n_ctx=N_CTX, n_threads=1)
        base_text = _greedy(e)  # fills the KV cache under the base model
        base = _logits(e)
    if case == "refused_scale_then_set":  # a NaN scale is refused first, as natively
        with pytest.raises(ValueError, match="scale"):
            e.set_lora(fx["lora_a"], float("nan"))
    calls = spec.calls(e, fx, tmp_path)
    with pytest.warns(LoraUnsupportedWarning) as rec:
        results = [call() for call in calls]
    assert results == [None if call == e.clear_loras else False for call in calls]
    assert [w.category for w in rec] == [LoraUnsupportedWarning] * len(calls)
    assert {str(w.message) for w in rec} == {e.capabilities.lora_reason}
    assert e.loras == {}
    if spec.model:
        assert _logits(e) == base
        assert _greedy(e) == base_text
    if case == "unload_and_reload":
        e.unload_model()
        e.load_model(fx["model_f32"], n_ctx=N_CTX, n_threads=1)
        assert e.loras == {} and _logits(e) == base
    if case == "set_lora":
        meta = e.lora_metadata(fx["lora_a"])  # read from the file, never loaded
        assert meta["loaded"] is False and meta["scale"] is None
    if e.capabilities.backend != "fake":
        record_property("behaviour", f"documented no-op: {spec.what}")


def test_the_reason_is_reported(engine_without_lora: Engine,
                                record_property: Callable[[str, object], None]) -> None:
    reason = engine_without_lora.capabilities.lora_reason
    assert isinstance(reason, str) and reason.endswith(".") and " " in reason
    assert "native backend" in reason
    if engine_without_lora.capabilities.backend != "fake":
        record_property("behaviour", f"lora=False: {reason}")


@pytest.mark.parametrize("which", ["default", "fake"])
def test_strict_engine_refuses(which: str, fx: dict[str, str],
                               record_property: Callable[[str, object], None]) -> None:
    with _engine(which, strict=True) as e:
        if e.capabilities.lora:
            pytest.skip(f"the {e.capabilities.backend} backend applies LoRA (tests/test_lora.py)")
        e.load_model(fx["model_f32"], n_ctx=N_CTX, n_threads=1)
        base = _logits(e)
        with pytest.raises(ValueError, match="scale"):
            e.set_lora(fx["lora_a"], float("nan"))  # arguments first, in both modes
        a = fx["lora_a"]
        for call in (lambda: e.set_lora(a), lambda: e.remove_lora(a), e.clear_loras):
            with pytest.raises(UnsupportedCapabilityError, match="native backend"):
                call()
        assert e.loras == {} and _logits(e) == base
        if e.capabilities.backend != "fake":
            record_property("behaviour", "strict: UnsupportedCapabilityError")
