"""The Engine's LoRA bookkeeping: set / remove / clear and their scales, failures that keep
the state, a backend without LoRA (warnings, strict mode), and the AdapterSet itself.

Tested against llamart.testing.FakeBackend (pure Python): no numpy, gguf or llama.cpp,
so this file runs unchanged in Pyodide. The fixtures (``fake``, ``fake_files``,
``fake_engine``, ``fake_loaded``) are in tests/conftest.py.
"""

from __future__ import annotations

import warnings

import pytest

from llamart import (
    AdapterError,
    Engine,
    LoraUnsupportedWarning,
    ModelParams,
    UnsupportedCapabilityError,
)
from llamart.bindings.base import BackendError, ErrorKind
from llamart.testing.fake import FakeBackend
from tests.support.fake_engine import logits_of

# ---- LoRA (backend with LoRA) ----

def test_set_lora_loads_once_and_updates_scale(fake_loaded: Engine, fake: FakeBackend,
                                               fake_files) -> None:
    base = logits_of(fake_loaded)
    assert fake_loaded.set_lora(fake_files["a"], scale=0.7) is True
    assert fake_loaded.loras == {fake_files["a"]: 0.7}
    with_a = logits_of(fake_loaded)
    assert with_a != base
    assert fake_loaded.set_lora(fake_files["a"], 0.3) is True
    assert fake.adapter_loads[fake_files["a"]] == 1  # the file is not read again
    assert fake_loaded.loras == {fake_files["a"]: 0.3}
    assert logits_of(fake_loaded) not in (base, with_a)
    fake_loaded.set_lora(fake_files["a"], 0.7)
    assert logits_of(fake_loaded) == with_a


def test_scale_update_equals_fresh_engine(fake_loaded: Engine, fake_files) -> None:
    fake_loaded.set_lora(fake_files["a"], 1.0)
    out1 = fake_loaded.complete("abc", max_tokens=8, temperature=0.0)
    fake_loaded.set_lora(fake_files["a"], -0.5)
    updated = fake_loaded.complete("abc", max_tokens=8, temperature=0.0)
    with Engine(FakeBackend()) as fresh:
        fresh.load_model(fake_files["model"], n_ctx=64)
        assert fresh.complete("abc", max_tokens=8, temperature=0.0) != updated
        fresh.set_lora(fake_files["a"], -0.5)
        assert fresh.complete("abc", max_tokens=8, temperature=0.0) == updated
        fresh.set_lora(fake_files["a"], 1.0)
        assert fresh.complete("abc", max_tokens=8, temperature=0.0) == out1


def test_stacking_order_and_order_independence(fake_loaded: Engine, fake: FakeBackend,
                                               fake_files) -> None:
    fake_loaded.set_lora(fake_files["a"], 0.5)
    fake_loaded.set_lora(fake_files["b"], 1.5)
    fake_loaded.set_lora(fake_files["a"], 0.25)  # keeps its place
    assert list(fake_loaded.loras.items()) == [(fake_files["a"], 0.25), (fake_files["b"], 1.5)]
    applied = [a[0] for n, a in fake.calls if n == "apply_adapters"][-1]
    assert applied == [(fake_files["a"], 0.25), (fake_files["b"], 1.5)]
    ab = logits_of(fake_loaded)
    with Engine(FakeBackend()) as other:
        other.load_model(fake_files["model"], n_ctx=64)
        other.set_lora(fake_files["b"], 1.5)
        other.set_lora(fake_files["a"], 0.25)
        assert logits_of(other) == ab


def test_scale_zero_remove_and_clear_restore_base(fake_loaded: Engine, fake: FakeBackend,
                                                  fake_files) -> None:
    base = logits_of(fake_loaded)
    fake_loaded.set_lora(fake_files["a"], 0.0)
    assert fake_loaded.loras == {fake_files["a"]: 0.0} and logits_of(fake_loaded) == base
    fake_loaded.set_lora(fake_files["a"], 1.0)
    fake_loaded.set_lora(fake_files["b"], 1.0)
    only_b = None
    assert fake_loaded.remove_lora(fake_files["a"]) is True
    assert fake_loaded.loras == {fake_files["b"]: 1.0} and fake.live and len(fake.live) == 1
    only_b = logits_of(fake_loaded)
    assert only_b != base
    assert fake_loaded.remove_lora(fake_files["b"]) is True
    assert logits_of(fake_loaded) == base and fake.live == set()
    fake_loaded.set_lora(fake_files["a"], 2.0)
    fake_loaded.set_lora(fake_files["c"], -1.0)
    assert fake_loaded.clear_loras() is None
    assert fake_loaded.loras == {} and fake.live == set() and logits_of(fake_loaded) == base
    fake_loaded.clear_loras()  # nothing to clear
    assert [a[0] for n, a in fake.calls if n == "apply_adapters"][-1] == []


def test_remove_unknown_is_noop(fake_loaded: Engine, fake: FakeBackend, fake_files) -> None:
    fake_loaded.set_lora(fake_files["a"])
    n = fake.counts["apply_adapters"]
    assert fake_loaded.remove_lora(fake_files["b"]) is False
    assert fake_loaded.remove_lora(fake_files["missing"]) is False
    assert fake.counts["apply_adapters"] == n and fake_loaded.loras == {fake_files["a"]: 1.0}


def test_paths_are_keyed_as_given(fake_loaded: Engine, fake: FakeBackend, fake_files, tmp_path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import pathlib

    assert fake_loaded.set_lora(pathlib.Path(fake_files["a"]), 0.5)
    assert fake_loaded.loras == {fake_files["a"]: 0.5}
    assert fake_loaded.remove_lora(pathlib.Path(fake_files["a"])) is True
    monkeypatch.chdir(tmp_path)
    fake_loaded.set_lora("a.gguf")
    fake_loaded.set_lora(fake_files["a"])  # same file, another spelling: another adapter
    assert list(fake_loaded.loras) == ["a.gguf", fake_files["a"]]


@pytest.mark.parametrize("scale, exc", [
    (float("nan"), ValueError), (float("inf"), ValueError), (-float("inf"), ValueError),
    (True, TypeError), ("1", TypeError), (None, TypeError),
])
def test_set_lora_scale_validated(fake_loaded: Engine, fake: FakeBackend, fake_files, scale, exc):
    with pytest.raises(exc, match="scale"):
        fake_loaded.set_lora(fake_files["a"], scale)
    assert fake.counts["load_adapter"] == 0 and fake_loaded.loras == {}


def test_set_lora_accepts_any_finite_scale(fake_loaded: Engine, fake_files) -> None:
    assert fake_loaded.set_lora(fake_files["a"], -2) is True
    assert fake_loaded.loras == {fake_files["a"]: -2.0}
    assert type(fake_loaded.loras[fake_files["a"]]) is float


def test_set_lora_bad_files(fake_loaded: Engine, fake: FakeBackend, fake_files) -> None:
    before = logits_of(fake_loaded)
    with pytest.raises(TypeError, match="path"):
        fake_loaded.set_lora(3)  # type: ignore[arg-type]
    with pytest.raises(FileNotFoundError) as ei:
        fake_loaded.set_lora(fake_files["missing"])
    assert ei.value.filename == fake_files["missing"]
    with pytest.raises(AdapterError) as ei:
        fake_loaded.set_lora(fake_files["bad_shape"])
    assert str(ei.value).startswith(fake_files["bad_shape"] + ": ")
    assert "incorrect shape" in str(ei.value)
    with pytest.raises(AdapterError, match="architecture 'gpt2'"):
        fake_loaded.set_lora(fake_files["bad_arch"])
    with pytest.raises(AdapterError, match="not a GGUF"):
        fake_loaded.set_lora(fake_files["garbage"])
    with pytest.raises(AdapterError, match="not a LoRA adapter"):
        fake_loaded.set_lora(fake_files["model"])
    assert fake.counts["load_adapter"] == 0 and fake_loaded.loras == {}
    assert logits_of(fake_loaded) == before


def test_failures_leave_state_unchanged(fake_loaded: Engine, fake: FakeBackend, fake_files) -> None:
    fake_loaded.set_lora(fake_files["a"], 0.5)
    state = logits_of(fake_loaded)

    fake.fail_next("load_adapter", ErrorKind.LOAD, "failed to load adapter")
    with pytest.raises(AdapterError) as ei:
        fake_loaded.set_lora(fake_files["b"])
    assert str(ei.value) == f"{fake_files['b']}: failed to load adapter"

    for dirty in (False, True):  # dirty: the backend changed its set before failing
        fake.fail_next("apply_adapters", ErrorKind.ALLOC, "out of memory", dirty=dirty)
        with pytest.raises(AdapterError, match="out of memory"):
            fake_loaded.set_lora(fake_files["b"])  # loaded, apply failed: freed again
        assert logits_of(fake_loaded) == state
        fake.fail_next("apply_adapters", ErrorKind.ALLOC, "out of memory", dirty=dirty)
        with pytest.raises(AdapterError):
            fake_loaded.set_lora(fake_files["a"], 0.9)  # scale update failed
        assert logits_of(fake_loaded) == state
        fake.fail_next("apply_adapters", ErrorKind.ALLOC, "out of memory", dirty=dirty)
        with pytest.raises(AdapterError):
            fake_loaded.remove_lora(fake_files["a"])
        assert logits_of(fake_loaded) == state
        fake.fail_next("apply_adapters", ErrorKind.ALLOC, "out of memory", dirty=dirty)
        with pytest.raises(AdapterError):
            fake_loaded.clear_loras()

    assert fake_loaded.loras == {fake_files["a"]: 0.5}
    assert len(fake.live) == 1  # the failed adapter's handle was freed
    assert logits_of(fake_loaded) == state
    assert fake_loaded.set_lora(fake_files["b"]) is True  # and it all still works
    assert fake_loaded.loras == {fake_files["a"]: 0.5, fake_files["b"]: 1.0}


def test_lora_metadata(fake_loaded: Engine, fake_files) -> None:
    meta = fake_loaded.lora_metadata(fake_files["a"])
    assert meta["alpha"] == 4.0 and meta["rank"] == 2 and meta["task_name"] == "domain"
    assert meta["targets"] == ["attn_q", "attn_v"] and meta["architecture"] == "llama"
    assert meta["loaded"] is False and meta["scale"] is None
    assert meta["metadata"]["adapter.type"] == "lora"
    fake_loaded.set_lora(fake_files["b"], 0.5)
    meta = fake_loaded.lora_metadata(fake_files["b"])
    assert meta["rank"] == 4 and meta["targets"] == ["attn_q"] and meta["task_name"] is None
    assert meta["loaded"] is True and meta["scale"] == 0.5 and "fake.serial" in meta["metadata"]
    with pytest.raises(AdapterError, match="not a LoRA adapter"):
        fake_loaded.lora_metadata(fake_files["model"])
    with pytest.raises(FileNotFoundError):
        fake_loaded.lora_metadata(fake_files["missing"])


# ---- LoRA on a backend without it (the WebAssembly behaviour) ----

@pytest.fixture
def nolora(fake_files):
    fake = FakeBackend(lora=False)
    e = Engine(fake)
    e.load_model(fake_files["model"], n_ctx=64)
    yield e, fake
    e.dispose()
    assert fake.violations == []


def test_lora_noop_when_unsupported(nolora, fake_files) -> None:
    e, fake = nolora
    assert e.capabilities.lora is False
    assert "native backend" in e.capabilities.lora_reason
    base = logits_of(e)
    with pytest.warns(LoraUnsupportedWarning) as rec:
        assert e.set_lora(fake_files["a"], 0.7) is False
        assert e.set_lora(fake_files["a"], 0.7) is False
        assert e.remove_lora(fake_files["a"]) is False
        assert e.clear_loras() is None
    assert len(rec) == 4  # one warning per call
    assert str(rec[0].message) == e.capabilities.lora_reason
    assert rec[0].filename == __file__  # points at the caller
    assert e.loras == {} and logits_of(e) == base
    assert fake.counts["load_adapter"] == 0 and fake.counts["apply_adapters"] == 0


def test_lora_noop_still_validates(nolora, fake_files) -> None:
    e, _ = nolora
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning may be issued before the argument check
        with pytest.raises(ValueError, match="scale"):
            e.set_lora(fake_files["a"], float("nan"))
        with pytest.raises(TypeError, match="scale"):
            e.set_lora(fake_files["a"], "0.5")
        with pytest.raises(TypeError, match="path"):
            e.set_lora(None)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="path"):
            e.remove_lora(1)  # type: ignore[arg-type]
        with pytest.raises(LoraUnsupportedWarning):
            e.set_lora(fake_files["a"])


def test_lora_strict_mode(fake_files) -> None:
    fake = FakeBackend(lora=False)
    with Engine(fake, strict=True) as e:
        assert e.strict
        e.load_model(fake_files["model"])
        for call in (lambda: e.set_lora(fake_files["a"]), lambda: e.remove_lora(fake_files["a"]),
                     e.clear_loras):
            with pytest.raises(UnsupportedCapabilityError, match="native backend"):
                call()
        assert e.loras == {}
        with pytest.raises(ValueError):
            e.set_lora(fake_files["a"], float("nan"))


# ---- the adapter set ----

@pytest.fixture
def adapter_set(fake: FakeBackend, fake_files, tmp_path, monkeypatch: pytest.MonkeyPatch):
    from llamart.engine.adapter_set import AdapterSet

    monkeypatch.chdir(tmp_path)  # adapters "a", "b", "c" are files here (the fake opens them)
    for name in ("a", "b", "c"):
        (tmp_path / name).write_bytes(b"GGUF")
    fake.load_model(fake_files["model"], ModelParams(), 1)
    yield AdapterSet(fake)
    fake.unload_model()


def test_adapter_set_plan_commit(adapter_set, fake: FakeBackend) -> None:
    s = adapter_set
    checked = []
    plan = s.plan_set("a", 0.5, lambda: checked.append("a"))
    assert checked == ["a"] and "a" not in s and s.scales() == {}  # planned, not applied
    s.apply(plan)
    assert s.scales() == {"a": 0.5} and [(h.path, x) for h, x in fake.active] == [("a", 0.5)]
    s.apply(s.plan_set("b", 1.0, lambda: None))
    s.apply(s.plan_set("a", 2.0, lambda: checked.append("again")))  # known: not re-checked
    assert checked == ["a"] and list(s.scales().items()) == [("a", 2.0), ("b", 1.0)]
    assert s.describe("a")["loaded"] is True and s.describe("a")["scale"] == 2.0
    assert s.describe("zz") == {"loaded": False, "scale": None}
    s.apply(s.plan_remove("a"))
    assert s.scales() == {"b": 1.0} and len(fake.live) == 1 and len(s) == 1
    s.apply(s.plan_clear())
    assert s.scales() == {} and fake.live == set() and fake.active == []


def test_adapter_set_rollback(adapter_set, fake: FakeBackend) -> None:
    s = adapter_set
    s.apply(s.plan_set("a", 0.5, lambda: None))
    before = list(fake.active)
    for dirty in (False, True):
        for plan in (lambda: s.plan_set("b", 1.0, lambda: None), lambda: s.plan_remove("a"),
                     lambda: s.plan_set("a", 3.0, lambda: None), s.plan_clear):
            p = plan()
            fake.fail_next("apply_adapters", ErrorKind.ALLOC, "out of memory", dirty=dirty)
            with pytest.raises(BackendError, match="out of memory"):
                s.apply(p)
            assert s.scales() == {"a": 0.5} and fake.active == before  # put back
            assert len(fake.live) == 1  # a handle loaded for the plan was freed
    p = s.plan_set("c", 1.0, lambda: None)
    s.rollback(p)  # an explicit rollback frees the plan's new handle
    assert len(fake.live) == 1 and s.scales() == {"a": 0.5}
    def refuse() -> None:
        raise ValueError("bad file")

    with pytest.raises(ValueError, match="bad file"):
        s.plan_set("d", 1.0, refuse)  # a file that does not fit is never loaded
    assert fake.adapter_loads["d"] == 0


def test_adapter_set_release_and_restore(adapter_set, fake: FakeBackend) -> None:
    s = adapter_set
    s.apply(s.plan_set("a", 0.5, lambda: None))
    s.apply(s.plan_set("b", -1.0, lambda: None))
    scales = s.scales()
    s.release()
    assert s.scales() == {} and fake.live == set() and fake.active == []
    fake.fail_next("load_adapter", ErrorKind.LOAD, "gone")
    s.restore(scales)  # best effort: "a" fails to load and is left out
    assert s.scales() == {"b": -1.0}
    assert [(h.path, x) for h, x in fake.active] == [("b", -1.0)]
    s.release()
