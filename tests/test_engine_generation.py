"""The Engine's own logic, tested against a pure-Python fake backend (llamart.testing.FakeBackend).

No numpy, gguf or llama.cpp here: this file runs unchanged in Pyodide. Model and adapter files
are tiny but valid GGUF files written by llamart.testing.gguf_writer (stdlib only), so the
Engine's real checks (llamart.gguf) run on them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import threading
import warnings

import pytest

import llamart
from llamart import (
    AdapterError,
    Capabilities,
    ContextOverflowError,
    Engine,
    EngineStateError,
    GenerationParams,
    LlamartError,
    LoraUnsupportedWarning,
    ModelLoadError,
    ModelParams,
    UnsupportedCapabilityError,
    _version,
)
from llamart.backends.base import BackendError, ErrorKind
from llamart.engine import default_backend_name, default_threads
from llamart.errors import ChatTemplateError, from_backend_error
from llamart.testing.fake import BOS, EOS, N_VOCAB, FakeBackend, byte_tokens, word_token
from llamart.testing.gguf_writer import CHAT_TEMPLATE, write_adapter, write_gguf, write_model
from tests.support.platform_support import run_coroutine, threads_available

needs_threads = pytest.mark.skipif(not threads_available(),
                                   reason="this Python cannot start threads (Pyodide)")

# ---- fixtures ----

@pytest.fixture
def files(tmp_path) -> dict[str, str]:
    d = str(tmp_path)
    j = os.path.join
    garbage = j(d, "garbage.gguf")
    with open(garbage, "wb") as f:
        f.write(b"this is not a gguf file at all" * 4)
    return {
        "model": write_model(j(d, "model.gguf")),
        "model2": write_model(j(d, "model2.gguf")),
        "a": write_adapter(j(d, "a.gguf"), task="domain"),
        "b": write_adapter(j(d, "b.gguf"), rank=4, alpha=8.0, targets=("attn_q",)),
        "c": write_adapter(j(d, "c.gguf"), rank=1, targets=("attn_v",)),
        "bad_shape": write_adapter(j(d, "bad_shape.gguf"), n_in=12),
        "bad_arch": write_adapter(j(d, "bad_arch.gguf"), arch="gpt2"),
        "garbage": garbage,
        "missing": j(d, "missing.gguf"),
        "dir": d,
    }


@pytest.fixture
def fake() -> FakeBackend:
    return FakeBackend()


@pytest.fixture
def engine(fake: FakeBackend):
    e = Engine(fake)
    yield e
    e.dispose()
    assert fake.violations == []


@pytest.fixture
def loaded(engine: Engine, files: dict[str, str]) -> Engine:
    engine.load_model(files["model"], n_ctx=64)
    return engine


def _logits(e: Engine, prompt: str = "abc") -> list[float]:
    return list(e.logits(prompt))


# ---- construction, capabilities, errors ----

def test_exports() -> None:
    assert llamart.__version__ == _version.__version__  # the one version source
    for name in ["ModelLoadError", "AdapterError", "EngineStateError", "ContextOverflowError",
                 "UnsupportedCapabilityError"]:
        assert issubclass(getattr(llamart, name), llamart.LlamartError)
    assert issubclass(LoraUnsupportedWarning, UserWarning)


def test_backend_argument() -> None:
    with pytest.raises(ValueError, match="backend"):
        Engine("cuda")
    with pytest.raises(TypeError, match="backend"):
        Engine(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="strict"):
        Engine(FakeBackend(), strict=1)  # type: ignore[arg-type]


def test_default_backend_follows_platform(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "emscripten")
    assert default_backend_name() == "wasm"
    assert default_threads() == 1
    monkeypatch.setattr(sys, "platform", "linux")
    assert default_backend_name() == "native"
    assert default_threads() >= 1


def test_capabilities_without_model(engine: Engine) -> None:
    caps = engine.capabilities
    assert isinstance(caps, Capabilities)
    assert caps.backend == "fake" and caps.lora is True and caps.lora_reason is None
    assert engine.model_info is None and engine.loras == {}


@pytest.mark.parametrize("kind, op, cls", [
    (ErrorKind.CONTEXT, "eval", ContextOverflowError),
    (ErrorKind.STATE, "eval", EngineStateError),
    (ErrorKind.UNSUPPORTED, "adapter", UnsupportedCapabilityError),
    (ErrorKind.LOAD, "adapter", AdapterError),
    (ErrorKind.ARG, "adapter", AdapterError),
    (ErrorKind.LOAD, "model", ModelLoadError),
    (ErrorKind.ALLOC, "model", ModelLoadError),
    (ErrorKind.DECODE, "eval", LlamartError),
])
def test_error_mapping(kind: str, op: str, cls: type) -> None:
    err = from_backend_error(BackendError(kind, "why"), op=op, path="/x.gguf")
    assert type(err) is cls
    assert str(err) == "/x.gguf: why" and err.path == "/x.gguf" and err.reason == "why"
    assert str(from_backend_error(BackendError(kind, "why"), op=op)) == "why"


# ---- loading ----

def test_load_model_reports_info(engine: Engine, fake: FakeBackend, files) -> None:
    info = engine.load_model(files["model"], n_ctx=128, n_batch=32, n_threads=2)
    assert info is engine.model_info and info.n_ctx == 128 and info.n_vocab == N_VOCAB
    assert fake.model_params == ModelParams(n_ctx=128, n_batch=32, n_threads=2)
    assert fake.n_threads == 2
    assert engine.metadata["general.name"] == "fake"
    engine.metadata["general.name"] = "changed"  # a copy
    assert engine.metadata["general.name"] == "fake"


def test_default_threads_used(engine: Engine, fake: FakeBackend, files) -> None:
    engine.load_model(files["model"])
    assert fake.n_threads == default_threads()
    if hasattr(os, "sched_getaffinity") and sys.platform != "emscripten":
        assert fake.n_threads == len(os.sched_getaffinity(0))


def test_model_params_object(engine: Engine, fake: FakeBackend, files) -> None:
    engine.load_model(files["model"], ModelParams(n_ctx=96, n_threads=1))
    assert fake.model_params.n_ctx == 96
    engine.load_model(files["model"], params=ModelParams(n_ctx=80, n_threads=1))
    assert fake.model_params.n_ctx == 80
    with pytest.raises(TypeError, match="not both"):
        engine.load_model(files["model"], n_ctx=10, params=ModelParams())


@pytest.mark.parametrize("kwargs, exc, name", [
    ({"n_ctx": True}, TypeError, "n_ctx"),
    ({"n_ctx": 1.5}, TypeError, "n_ctx"),
    ({"n_ctx": -1}, ValueError, "n_ctx"),
    ({"n_ctx": 2**31}, ValueError, "n_ctx"),
    ({"n_batch": 0}, ValueError, "n_batch"),
    ({"n_threads": 0}, ValueError, "n_threads"),
    ({"n_threads": "2"}, TypeError, "n_threads"),
    ({"use_mmap": 1}, TypeError, "use_mmap"),
])
def test_load_model_params_validated(engine, fake, files, kwargs, exc, name) -> None:
    with pytest.raises(exc, match=name):
        engine.load_model(files["model"], **kwargs)
    assert fake.counts["load_model"] == 0


def test_load_model_bad_files(engine: Engine, fake: FakeBackend, files) -> None:
    with pytest.raises(TypeError, match="path"):
        engine.load_model(123)  # type: ignore[arg-type]
    with pytest.raises(FileNotFoundError) as ei:
        engine.load_model(files["missing"])
    assert ei.value.filename == files["missing"] and files["missing"] in str(ei.value)
    with pytest.raises(IsADirectoryError):
        engine.load_model(files["dir"])
    with pytest.raises(ModelLoadError) as ei:
        engine.load_model(files["garbage"])
    assert str(ei.value).startswith(files["garbage"] + ": ") and "GGUF" in str(ei.value)
    with pytest.raises(ModelLoadError, match="adapter"):
        engine.load_model(files["a"])
    assert fake.counts["load_model"] == 0  # none of these reached the backend
    engine.load_model(files["model"])  # and the engine still works
    fake.script = byte_tokens(b"ok")
    assert engine.complete("x", max_tokens=2) == "ok"


def test_backend_load_failure_keeps_previous_model(loaded: Engine, fake: FakeBackend,
                                                   files) -> None:
    loaded.set_lora(files["a"], 0.5)
    before = _logits(loaded)
    fake.fail_next("load_model", ErrorKind.LOAD, "unknown model architecture")
    with pytest.raises(ModelLoadError) as ei:
        loaded.load_model(files["model2"])
    assert str(ei.value) == f"{files['model2']}: unknown model architecture"
    assert loaded.model_info.path == files["model"]
    assert loaded.loras == {files["a"]: 0.5}
    assert _logits(loaded) == before


def test_reload_unloads_first_and_forgets_adapters(loaded: Engine, fake: FakeBackend,
                                                   files) -> None:
    loaded.set_lora(files["a"])
    loaded.load_model(files["model2"])
    assert fake.counts["unload_model"] == 1 and fake.live == set()
    assert loaded.loras == {} and loaded.model_info.path == files["model2"]
    loaded.set_lora(files["a"])
    assert fake.adapter_loads[files["a"]] == 2  # adapters must be applied again


def test_unload_and_dispose(engine: Engine, fake: FakeBackend, files) -> None:
    engine.unload_model()  # no model: no-op
    engine.load_model(files["model"])
    engine.set_lora(files["a"])
    engine.set_lora(files["b"])
    engine.unload_model()
    assert engine.model_info is None and engine.loras == {} and fake.live == set()
    assert fake.loaded_path is None
    with pytest.raises(EngineStateError, match="no model"):
        engine.generate("hi")
    with pytest.raises(EngineStateError, match="no model"):
        engine.set_lora(files["a"])
    engine.dispose()
    engine.dispose()  # idempotent
    assert fake.counts["dispose"] == 1 and engine.disposed


def test_use_after_dispose(engine: Engine, files) -> None:
    engine.load_model(files["model"])
    engine.dispose()
    for call in [lambda: engine.load_model(files["model"]), lambda: engine.generate("x"),
                 lambda: engine.set_lora(files["a"]), lambda: engine.tokenize("x"),
                 lambda: engine.metadata, lambda: engine.logits("x"),
                 lambda: engine.remove_lora(files["a"]), engine.clear_loras,
                 engine.unload_model, lambda: engine.__enter__()]:
        with pytest.raises(EngineStateError, match="disposed"):
            call()
    assert engine.loras == {} and engine.capabilities.backend == "fake"


def test_with_block_disposes(fake: FakeBackend, files) -> None:
    with Engine(fake) as e:
        e.load_model(files["model"])
        e.set_lora(files["a"])
    assert e.disposed and fake.disposed and fake.loaded_path is None and fake.live == set()
    assert fake.violations == []


# ---- text ----

def test_tokenize_detokenize(loaded: Engine) -> None:
    toks = loaded.tokenize("hé")
    assert toks == [BOS] + byte_tokens("hé".encode())
    assert loaded.tokenize("hé", add_special=False) == byte_tokens("hé".encode())
    assert loaded.tokenize("<s>", parse_special=True) == [BOS, BOS]
    assert loaded.detokenize(toks) == "hé"
    assert loaded.detokenize([word_token(b"hello"), word_token(b" world")]) == "hello world"
    assert loaded.detokenize(byte_tokens(b"\xff")) == "\ufffd"
    with pytest.raises(ValueError, match=rf"tokens\[1\] = {N_VOCAB}"):
        loaded.detokenize([5, N_VOCAB])
    with pytest.raises(ValueError, match=r"tokens\[0\] = -1"):
        loaded.detokenize([-1])
    with pytest.raises(TypeError, match=r"tokens\[0\]"):
        loaded.detokenize([True])
    with pytest.raises(TypeError, match="tokens"):
        loaded.detokenize("abc")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="text"):
        loaded.tokenize(b"abc")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="add_special"):
        loaded.tokenize("abc", add_special=1)  # type: ignore[arg-type]


# ---- generation arguments ----

@pytest.mark.parametrize("kwargs, exc, name", [
    ({"max_tokens": -1}, ValueError, "max_tokens"),
    ({"max_tokens": True}, TypeError, "max_tokens"),
    ({"max_tokens": 2.0}, TypeError, "max_tokens"),
    ({"temperature": -0.1}, ValueError, "temperature"),
    ({"temperature": float("nan")}, ValueError, "temperature"),
    ({"temperature": float("inf")}, ValueError, "temperature"),
    ({"temperature": "hot"}, TypeError, "temperature"),
    ({"temperature": True}, TypeError, "temperature"),
    ({"top_k": -1}, ValueError, "top_k"),
    ({"top_k": 2.5}, TypeError, "top_k"),
    ({"top_p": 0.0}, ValueError, "top_p"),
    ({"top_p": 1.5}, ValueError, "top_p"),
    ({"top_p": float("nan")}, ValueError, "top_p"),
    ({"min_p": -0.1}, ValueError, "min_p"),
    ({"min_p": 1.01}, ValueError, "min_p"),
    ({"repeat_penalty": 0.0}, ValueError, "repeat_penalty"),
    ({"repeat_penalty": -1.0}, ValueError, "repeat_penalty"),
    ({"seed": -1}, ValueError, "seed"),
    ({"seed": 1.0}, TypeError, "seed"),
    ({"seed": True}, TypeError, "seed"),
    ({"seed": 2**40}, ValueError, "seed"),
    ({"stop": 5}, TypeError, "stop"),
    ({"stop": b"x"}, TypeError, "stop"),
    ({"stop": ["ok", 1]}, TypeError, r"stop\[1\]"),
    ({"stop": ["ok", ""]}, ValueError, r"stop\[1\]"),
])
def test_generation_params_validated_eagerly(loaded, fake, kwargs, exc, name) -> None:
    with pytest.raises(exc, match=name):
        loaded.generate("hello", **kwargs)  # raised by the call, before any next()
    with pytest.raises(exc, match=name):
        loaded.complete("hello", **kwargs)
    with pytest.raises(exc, match=name):
        loaded.generate("hello", params=GenerationParams(**kwargs))
    assert fake.counts["eval_prompt"] == 0 and fake.counts["tokenize"] == 0


def test_prompt_validated(loaded: Engine) -> None:
    with pytest.raises(ValueError, match="prompt is empty"):
        loaded.generate("")
    with pytest.raises(TypeError, match="prompt"):
        loaded.generate(5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="prompt is empty"):
        loaded.logits("")


def test_generation_params_object(loaded: Engine, fake: FakeBackend) -> None:
    fake.script = byte_tokens(b"abcdef")
    assert loaded.complete("x", GenerationParams(max_tokens=2, seed=7)) == "ab"
    assert fake.seed == 7 and fake.sampler.max_tokens == 2
    assert loaded.complete("x", params=GenerationParams(max_tokens=1, stop="zz")) == "c"
    assert fake.sampler.stop == ("zz",)
    with pytest.raises(TypeError, match="not both"):
        loaded.generate("x", temperature=0.1, params=GenerationParams())


def test_seed(loaded: Engine, fake: FakeBackend) -> None:
    a = loaded.complete("x", max_tokens=8, temperature=1.0, seed=123)
    assert fake.seed == 123 and loaded.last_usage["seed"] == 123
    assert loaded.complete("x", max_tokens=8, temperature=1.0, seed=123) == a
    loaded.complete("x", max_tokens=1, temperature=1.0)
    assert 0 <= fake.seed < 2**31 and loaded.last_usage["seed"] == fake.seed


# ---- generation semantics ----

def test_stream_and_finish_reasons(loaded: Engine, fake: FakeBackend) -> None:
    fake.script = [word_token(b"hello"), word_token(b" world"), EOS, *byte_tokens(b"zz")]
    chunks = list(loaded.generate("x", max_tokens=10))
    assert chunks == ["hello", " world"] and loaded.last_finish_reason == "stop"
    assert loaded.last_usage == {"prompt_tokens": 2, "completion_tokens": 2,
                                 "cached_tokens": 0, "seed": fake.seed}
    fake.script = byte_tokens(b"abcdefgh")
    assert loaded.complete("x", max_tokens=3) == "abc"
    assert loaded.last_finish_reason == "length"


def test_max_tokens_and_eval_after(loaded: Engine, fake: FakeBackend) -> None:
    fake.script = byte_tokens(b"abcdefgh")
    assert loaded.complete("x", max_tokens=4) == "abcd"
    steps = [args for name, args in fake.calls if name == "next_tokens"]
    assert steps[0] == (1, True)  # the first token alone: no delay before the first text
    assert sum(n for n, _ in steps) == 4 and steps[-1][1] is False
    assert all(eval_last for _, eval_last in steps[:-1])
    assert fake.ctx == [BOS, *byte_tokens(b"xabc")]  # the last token is not evaluated
    assert loaded.complete("x", max_tokens=0) == ""
    assert loaded.last_finish_reason == "length" and len(steps) == fake.counts["next_tokens"]


def test_each_generation_evaluates_its_whole_prompt(loaded: Engine, fake: FakeBackend) -> None:
    first = loaded.complete("abc", max_tokens=6, temperature=0.0)
    second = loaded.complete("abc", max_tokens=6, temperature=0.0)
    assert first == second
    evals = [args[0] for name, args in fake.calls if name == "eval_prompt"]
    assert evals == [[BOS] + byte_tokens(b"abc")] * 2  # the prompt from position 0, each time
    assert loaded.last_usage["cached_tokens"] == 3  # all but the last token came from the cache


def test_utf8_split_across_tokens(loaded: Engine, fake: FakeBackend) -> None:
    text = "é€😀 ok"
    fake.script = byte_tokens(text.encode())
    chunks = list(loaded.generate("x", max_tokens=len(text.encode())))
    assert "".join(chunks) == text and "\ufffd" not in "".join(chunks)
    assert chunks[:3] == ["é", "€", "😀"]
    fake.script = [word_token(b"\xe2\x82\xac"), *byte_tokens("€".encode())]
    assert loaded.complete("x", max_tokens=4) == "€€"


def test_invalid_utf8_is_replaced(loaded: Engine, fake: FakeBackend) -> None:
    fake.script = byte_tokens(b"a\xffb")
    assert loaded.complete("x", max_tokens=3) == "a\ufffdb"
    fake.script = byte_tokens("é".encode()[:1])  # cut off by max_tokens
    assert loaded.complete("x", max_tokens=1) == "\ufffd"


def test_stop_strings(loaded: Engine, fake: FakeBackend) -> None:
    fake.script = byte_tokens(b"abcSTOPdef")
    chunks = list(loaded.generate("x", max_tokens=20, stop="STOP"))
    assert "".join(chunks) == "abc" and loaded.last_finish_reason == "stop"
    assert all("S" not in c for c in chunks)  # a possible stop prefix was never emitted
    assert loaded.last_usage["completion_tokens"] == 7  # stopped right at the match
    fake.script = byte_tokens(b"abSTxySTOP")  # a prefix that does not complete is released
    assert loaded.complete("x", max_tokens=8, stop=["STOP"]) == "abSTxyST"
    assert loaded.last_finish_reason == "length"
    fake.script = byte_tokens(b"one, two. three")  # the earliest of several stops wins
    assert loaded.complete("x", max_tokens=20, stop=[".", ","]) == "one"
    fake.script = byte_tokens("café!".encode())
    assert loaded.complete("x", max_tokens=20, stop=("é!",)) == "caf"
    fake.script = [word_token(b"hello"), word_token(b" world")]  # stop inside one piece
    assert loaded.complete("x", max_tokens=5, stop=["lo w"]) == "hel"


def test_many_stop_strings(loaded: Engine, fake: FakeBackend) -> None:
    stops = [f"never{i}" for i in range(5000)] + ["END"]
    fake.script = byte_tokens(b"nevermind END")
    assert loaded.complete("x", max_tokens=30, stop=stops) == "nevermind "


def test_context_full(engine: Engine, fake: FakeBackend, files) -> None:
    engine.load_model(files["model"], n_ctx=8)
    fake.script = byte_tokens(b"abcdefghij")
    out = engine.complete("xy", max_tokens=100)  # prompt: BOS x y = 3 tokens
    assert engine.last_finish_reason == "context"
    assert out == "abcdef"  # 5 evaluated fill the context; the 6th is sampled, not evaluated
    assert fake.counts["sampled"] == 6


def test_prompt_overflow(engine: Engine, fake: FakeBackend, files) -> None:
    engine.load_model(files["model"], n_ctx=8)
    with pytest.raises(ContextOverflowError, match="n_ctx=8"):
        engine.generate("abcdefg")  # 8 tokens: no room to generate
    assert fake.counts["eval_prompt"] == 0
    assert len(engine.logits("abcdefg")) == N_VOCAB  # logits only need the prompt to fit
    with pytest.raises(ContextOverflowError):
        engine.logits("abcdefgh")
    engine.generate("abcdef")  # 7 tokens: fine


def test_logits(loaded: Engine) -> None:
    import array

    out = loaded.logits("abc")
    assert isinstance(out, array.array) and out.typecode == "f" and len(out) == N_VOCAB
    assert memoryview(out).format == "f"
    assert list(loaded.logits("abc")) == list(out)
    assert list(loaded.logits("abd")) != list(out)
    assert list(loaded.logits([BOS, *byte_tokens(b"abc")])) == list(out)


def test_backend_error_during_generation(loaded: Engine, fake: FakeBackend) -> None:
    fake.script = byte_tokens(b"abcdef")
    it = loaded.generate("x", max_tokens=5)
    assert next(it) == "a"
    fake.fail_next("next_tokens", ErrorKind.DECODE, "llama_decode failed")
    with pytest.raises(LlamartError, match="llama_decode failed"):
        next(it)
    assert loaded.last_finish_reason == "error"
    fake.script = byte_tokens(b"ok")
    assert loaded.complete("x", max_tokens=2) == "ok"  # still usable


def test_keyboard_interrupt_leaves_engine_usable(loaded: Engine, fake: FakeBackend,
                                                 files) -> None:
    count = {"n": 0}

    def hook() -> None:
        count["n"] += 1
        if count["n"] == 2:
            raise KeyboardInterrupt

    fake.on_next_token = hook
    fake.script = byte_tokens(b"abcdef")
    with pytest.raises(KeyboardInterrupt):
        loaded.complete("x", max_tokens=5)
    assert loaded.last_finish_reason == "cancelled"
    fake.on_next_token = None
    assert loaded.set_lora(files["a"]) is True
    fake.script = byte_tokens(b"ok")
    assert loaded.complete("x", max_tokens=2) == "ok"


# ---- chat ----

def test_chat_uses_template_with_special_tokens(loaded: Engine, fake: FakeBackend) -> None:
    fake.script = byte_tokens(b"Hi!") + [EOS]
    reply = loaded.chat([{"role": "system", "content": "be brief"},
                         {"role": "user", "content": "hi"}], max_tokens=10)
    assert reply == "Hi!" and loaded.last_finish_reason == "stop"
    text, add_special, parse_special = [a for n, a in fake.calls if n == "tokenize"][-1]
    assert text == "<s>system: be brief</s><s>user: hi</s><s>assistant: "
    assert parse_special is True
    prompt = [a[0] for n, a in fake.calls if n == "eval_prompt"][-1]
    assert prompt[:2] == [BOS, BOS]  # "<s>" parsed as the special token


@pytest.mark.parametrize("messages, exc, match", [
    ("hi", TypeError, "messages"),
    ([], ValueError, "messages is empty"),
    (["hi"], TypeError, r"messages\[0\]"),
    ([{"role": "user"}], ValueError, r"messages\[0\] has no 'content'"),
    ([{"role": "user", "content": 3}], TypeError, r"messages\[0\]\['content'\]"),
    ([{"role": "", "content": "x"}], ValueError, "role"),
])
def test_chat_messages_validated(loaded: Engine, messages, exc, match) -> None:
    with pytest.raises(exc, match=match):
        loaded.chat(messages)


def test_chat_without_template(files) -> None:
    fake = FakeBackend()
    with Engine(fake) as e:
        e.load_model(write_model(os.path.join(files["dir"], "bare.gguf"), template=None))
        with pytest.raises(ChatTemplateError, match="bare.gguf has no chat template"):
            e.chat([{"role": "user", "content": "hi"}])
        fake.script = byte_tokens(b"k")
        assert e.complete("x", max_tokens=1) == "k"


# ---- LoRA (backend with LoRA) ----

def test_set_lora_loads_once_and_updates_scale(loaded: Engine, fake: FakeBackend,
                                               files) -> None:
    base = _logits(loaded)
    assert loaded.set_lora(files["a"], scale=0.7) is True
    assert loaded.loras == {files["a"]: 0.7}
    with_a = _logits(loaded)
    assert with_a != base
    assert loaded.set_lora(files["a"], 0.3) is True
    assert fake.adapter_loads[files["a"]] == 1  # the file is not read again
    assert loaded.loras == {files["a"]: 0.3} and _logits(loaded) not in (base, with_a)
    loaded.set_lora(files["a"], 0.7)
    assert _logits(loaded) == with_a


def test_scale_update_equals_fresh_engine(loaded: Engine, files) -> None:
    loaded.set_lora(files["a"], 1.0)
    out1 = loaded.complete("abc", max_tokens=8, temperature=0.0)
    loaded.set_lora(files["a"], -0.5)
    updated = loaded.complete("abc", max_tokens=8, temperature=0.0)
    with Engine(FakeBackend()) as fresh:
        fresh.load_model(files["model"], n_ctx=64)
        assert fresh.complete("abc", max_tokens=8, temperature=0.0) != updated
        fresh.set_lora(files["a"], -0.5)
        assert fresh.complete("abc", max_tokens=8, temperature=0.0) == updated
        fresh.set_lora(files["a"], 1.0)
        assert fresh.complete("abc", max_tokens=8, temperature=0.0) == out1


def test_stacking_order_and_order_independence(loaded: Engine, fake: FakeBackend,
                                               files) -> None:
    loaded.set_lora(files["a"], 0.5)
    loaded.set_lora(files["b"], 1.5)
    loaded.set_lora(files["a"], 0.25)  # keeps its place
    assert list(loaded.loras.items()) == [(files["a"], 0.25), (files["b"], 1.5)]
    applied = [a[0] for n, a in fake.calls if n == "apply_adapters"][-1]
    assert applied == [(files["a"], 0.25), (files["b"], 1.5)]
    ab = _logits(loaded)
    with Engine(FakeBackend()) as other:
        other.load_model(files["model"], n_ctx=64)
        other.set_lora(files["b"], 1.5)
        other.set_lora(files["a"], 0.25)
        assert _logits(other) == ab


def test_scale_zero_remove_and_clear_restore_base(loaded: Engine, fake: FakeBackend,
                                                  files) -> None:
    base = _logits(loaded)
    loaded.set_lora(files["a"], 0.0)
    assert loaded.loras == {files["a"]: 0.0} and _logits(loaded) == base
    loaded.set_lora(files["a"], 1.0)
    loaded.set_lora(files["b"], 1.0)
    only_b = None
    assert loaded.remove_lora(files["a"]) is True
    assert loaded.loras == {files["b"]: 1.0} and fake.live and len(fake.live) == 1
    only_b = _logits(loaded)
    assert only_b != base
    assert loaded.remove_lora(files["b"]) is True
    assert _logits(loaded) == base and fake.live == set()
    loaded.set_lora(files["a"], 2.0)
    loaded.set_lora(files["c"], -1.0)
    assert loaded.clear_loras() is None
    assert loaded.loras == {} and fake.live == set() and _logits(loaded) == base
    loaded.clear_loras()  # nothing to clear
    assert [a[0] for n, a in fake.calls if n == "apply_adapters"][-1] == []


def test_remove_unknown_is_noop(loaded: Engine, fake: FakeBackend, files) -> None:
    loaded.set_lora(files["a"])
    n = fake.counts["apply_adapters"]
    assert loaded.remove_lora(files["b"]) is False
    assert loaded.remove_lora(files["missing"]) is False
    assert fake.counts["apply_adapters"] == n and loaded.loras == {files["a"]: 1.0}


def test_paths_are_keyed_as_given(loaded: Engine, fake: FakeBackend, files, tmp_path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import pathlib

    assert loaded.set_lora(pathlib.Path(files["a"]), 0.5)
    assert loaded.loras == {files["a"]: 0.5}
    assert loaded.remove_lora(pathlib.Path(files["a"])) is True
    monkeypatch.chdir(tmp_path)
    loaded.set_lora("a.gguf")
    loaded.set_lora(files["a"])  # same file, another spelling: another adapter
    assert list(loaded.loras) == ["a.gguf", files["a"]]


@pytest.mark.parametrize("scale, exc", [
    (float("nan"), ValueError), (float("inf"), ValueError), (-float("inf"), ValueError),
    (True, TypeError), ("1", TypeError), (None, TypeError),
])
def test_set_lora_scale_validated(loaded: Engine, fake: FakeBackend, files, scale, exc):
    with pytest.raises(exc, match="scale"):
        loaded.set_lora(files["a"], scale)
    assert fake.counts["load_adapter"] == 0 and loaded.loras == {}


def test_set_lora_accepts_any_finite_scale(loaded: Engine, files) -> None:
    assert loaded.set_lora(files["a"], -2) is True
    assert loaded.loras == {files["a"]: -2.0} and type(loaded.loras[files["a"]]) is float


def test_set_lora_bad_files(loaded: Engine, fake: FakeBackend, files) -> None:
    before = _logits(loaded)
    with pytest.raises(TypeError, match="path"):
        loaded.set_lora(3)  # type: ignore[arg-type]
    with pytest.raises(FileNotFoundError) as ei:
        loaded.set_lora(files["missing"])
    assert ei.value.filename == files["missing"]
    with pytest.raises(AdapterError) as ei:
        loaded.set_lora(files["bad_shape"])
    assert str(ei.value).startswith(files["bad_shape"] + ": ")
    assert "incorrect shape" in str(ei.value)
    with pytest.raises(AdapterError, match="architecture 'gpt2'"):
        loaded.set_lora(files["bad_arch"])
    with pytest.raises(AdapterError, match="not a GGUF"):
        loaded.set_lora(files["garbage"])
    with pytest.raises(AdapterError, match="not a LoRA adapter"):
        loaded.set_lora(files["model"])
    assert fake.counts["load_adapter"] == 0 and loaded.loras == {}
    assert _logits(loaded) == before


def test_failures_leave_state_unchanged(loaded: Engine, fake: FakeBackend, files) -> None:
    loaded.set_lora(files["a"], 0.5)
    state = _logits(loaded)

    fake.fail_next("load_adapter", ErrorKind.LOAD, "failed to load adapter")
    with pytest.raises(AdapterError) as ei:
        loaded.set_lora(files["b"])
    assert str(ei.value) == f"{files['b']}: failed to load adapter"

    for dirty in (False, True):  # dirty: the backend changed its set before failing
        fake.fail_next("apply_adapters", ErrorKind.ALLOC, "out of memory", dirty=dirty)
        with pytest.raises(AdapterError, match="out of memory"):
            loaded.set_lora(files["b"])  # loaded, apply failed: freed again
        assert _logits(loaded) == state
        fake.fail_next("apply_adapters", ErrorKind.ALLOC, "out of memory", dirty=dirty)
        with pytest.raises(AdapterError):
            loaded.set_lora(files["a"], 0.9)  # scale update failed
        assert _logits(loaded) == state
        fake.fail_next("apply_adapters", ErrorKind.ALLOC, "out of memory", dirty=dirty)
        with pytest.raises(AdapterError):
            loaded.remove_lora(files["a"])
        assert _logits(loaded) == state
        fake.fail_next("apply_adapters", ErrorKind.ALLOC, "out of memory", dirty=dirty)
        with pytest.raises(AdapterError):
            loaded.clear_loras()

    assert loaded.loras == {files["a"]: 0.5}
    assert len(fake.live) == 1  # the failed adapter's handle was freed
    assert _logits(loaded) == state
    assert loaded.set_lora(files["b"]) is True  # and it all still works
    assert loaded.loras == {files["a"]: 0.5, files["b"]: 1.0}


def test_lora_metadata(loaded: Engine, files) -> None:
    meta = loaded.lora_metadata(files["a"])
    assert meta["alpha"] == 4.0 and meta["rank"] == 2 and meta["task_name"] == "domain"
    assert meta["targets"] == ["attn_q", "attn_v"] and meta["architecture"] == "llama"
    assert meta["loaded"] is False and meta["scale"] is None
    assert meta["metadata"]["adapter.type"] == "lora"
    loaded.set_lora(files["b"], 0.5)
    meta = loaded.lora_metadata(files["b"])
    assert meta["rank"] == 4 and meta["targets"] == ["attn_q"] and meta["task_name"] is None
    assert meta["loaded"] is True and meta["scale"] == 0.5 and "fake.serial" in meta["metadata"]
    with pytest.raises(AdapterError, match="not a LoRA adapter"):
        loaded.lora_metadata(files["model"])
    with pytest.raises(FileNotFoundError):
        loaded.lora_metadata(files["missing"])


# ---- LoRA on a backend without it (the WebAssembly behaviour) ----

@pytest.fixture
def nolora(files):
    fake = FakeBackend(lora=False)
    e = Engine(fake)
    e.load_model(files["model"], n_ctx=64)
    yield e, fake
    e.dispose()
    assert fake.violations == []


def test_lora_noop_when_unsupported(nolora, files) -> None:
    e, fake = nolora
    assert e.capabilities.lora is False
    assert "native backend" in e.capabilities.lora_reason
    base = _logits(e)
    with pytest.warns(LoraUnsupportedWarning) as rec:
        assert e.set_lora(files["a"], 0.7) is False
        assert e.set_lora(files["a"], 0.7) is False
        assert e.remove_lora(files["a"]) is False
        assert e.clear_loras() is None
    assert len(rec) == 4  # one warning per call
    assert str(rec[0].message) == e.capabilities.lora_reason
    assert rec[0].filename == __file__  # points at the caller
    assert e.loras == {} and _logits(e) == base
    assert fake.counts["load_adapter"] == 0 and fake.counts["apply_adapters"] == 0


def test_lora_noop_still_validates(nolora, files) -> None:
    e, _ = nolora
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning may be issued before the argument check
        with pytest.raises(ValueError, match="scale"):
            e.set_lora(files["a"], float("nan"))
        with pytest.raises(TypeError, match="scale"):
            e.set_lora(files["a"], "0.5")
        with pytest.raises(TypeError, match="path"):
            e.set_lora(None)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="path"):
            e.remove_lora(1)  # type: ignore[arg-type]
        with pytest.raises(LoraUnsupportedWarning):
            e.set_lora(files["a"])


def test_lora_strict_mode(files) -> None:
    fake = FakeBackend(lora=False)
    with Engine(fake, strict=True) as e:
        assert e.strict
        e.load_model(files["model"])
        for call in (lambda: e.set_lora(files["a"]), lambda: e.remove_lora(files["a"]),
                     e.clear_loras):
            with pytest.raises(UnsupportedCapabilityError, match="native backend"):
                call()
        assert e.loras == {}
        with pytest.raises(ValueError):
            e.set_lora(files["a"], float("nan"))


# ---- streaming, closing, cancelling, threads ----

def test_changes_refused_while_streaming(loaded: Engine, fake: FakeBackend, files) -> None:
    fake.script = byte_tokens(b"abcdef")
    it = loaded.generate("x", max_tokens=6)
    assert next(it) == "a"
    for call in [lambda: loaded.set_lora(files["a"]), lambda: loaded.remove_lora(files["a"]),
                 loaded.clear_loras, lambda: loaded.load_model(files["model"]),
                 loaded.unload_model, lambda: loaded.logits("x"),
                 lambda: loaded.generate("y"), lambda: loaded.complete("y")]:
        with pytest.raises(EngineStateError, match="generation is streaming"):
            call()
    assert loaded.tokenize("ab", add_special=False) == byte_tokens(b"ab")  # reading is fine
    assert loaded.metadata and loaded.loras == {}
    assert "".join(it) == "bcdef" and loaded.last_finish_reason == "length"
    assert loaded.set_lora(files["a"]) is True


def test_generator_not_started_holds_nothing(loaded: Engine, fake: FakeBackend, files) -> None:
    it = loaded.generate("x", max_tokens=3)
    assert loaded.set_lora(files["a"]) is True  # not started: nothing held
    del it
    fake.script = byte_tokens(b"k")
    assert loaded.complete("x", max_tokens=1) == "k"


def test_closing_the_generator_releases(loaded: Engine, fake: FakeBackend, files) -> None:
    fake.script = byte_tokens(b"abcdef")
    it = loaded.generate("x", max_tokens=6)
    next(it)
    it.close()
    assert loaded.last_finish_reason == "cancelled"
    assert loaded.set_lora(files["a"]) is True
    for _chunk in loaded.generate("x", max_tokens=6):
        break  # leaving the loop releases at once
    assert loaded.last_finish_reason == "cancelled"
    assert loaded.remove_lora(files["a"]) is True


def test_dispose_ends_a_suspended_generation(engine: Engine, fake: FakeBackend, files) -> None:
    engine.load_model(files["model"])
    engine.set_lora(files["a"])
    fake.script = byte_tokens(b"abc")
    it = engine.generate("x", max_tokens=3)
    next(it)
    engine.dispose()
    with pytest.raises(EngineStateError, match="disposed"):
        next(it)
    assert fake.loaded_path is None and fake.live == set() and fake.disposed


def test_cancel_without_generation(loaded: Engine, fake: FakeBackend) -> None:
    assert loaded.cancel() is False
    fake.script = byte_tokens(b"ok")
    assert loaded.complete("x", max_tokens=2) == "ok"
    assert loaded.last_finish_reason == "length"  # an earlier cancel() does not leak in


def test_cancel_in_same_thread(loaded: Engine, fake: FakeBackend) -> None:
    fake.script = byte_tokens(b"abcdef")
    out = []
    for chunk in loaded.generate("x", max_tokens=6):
        out.append(chunk)
        if len(out) == 2:
            assert loaded.cancel() is True
    assert out == ["a", "b"] and loaded.last_finish_reason == "cancelled"


@needs_threads
def test_cancel_from_another_thread(loaded: Engine, fake: FakeBackend) -> None:
    fake.script = byte_tokens(b"abcdefgh")
    calls = {"n": 0}

    def hook() -> None:
        calls["n"] += 1
        if calls["n"] == 3:  # cancel while token 3 is being computed
            t = threading.Thread(target=loaded.cancel)
            t.start()
            t.join()

    fake.on_next_token = hook
    out = loaded.complete("x", max_tokens=8)
    assert fake.counts["sampled"] == 3  # token 3 completes inside the step, no 4th
    assert "abc".startswith(out)  # nothing is handed out once cancel() has returned
    assert loaded.last_finish_reason == "cancelled"


def test_stale_cancel_request_does_not_end_a_later_generation(loaded: Engine,
                                                            fake: FakeBackend) -> None:
    fake.request_cancel()  # e.g. cancel() racing the end of an earlier generation
    fake.script = byte_tokens(b"abcd")
    assert loaded.complete("x", max_tokens=4) == "abcd"
    assert loaded.last_finish_reason == "length"


def test_cancel_between_tokens_of_one_step(loaded: Engine, fake: FakeBackend) -> None:
    fake.script = byte_tokens(b"abcdefgh")
    seen = []
    for chunk in loaded.generate("x", max_tokens=8):
        seen.append(chunk)
        if chunk == "b":  # "b".."h" came back from one step: the rest is dropped
            loaded.cancel()
    assert seen == ["a", "b"] and loaded.last_finish_reason == "cancelled"
    assert loaded.last_usage["completion_tokens"] == 2


@needs_threads
def test_calls_from_other_threads_during_generation(loaded: Engine, fake: FakeBackend,
                                                    files) -> None:
    fake.script = byte_tokens(b"abcd")
    it = loaded.generate("x", max_tokens=4)
    next(it)
    results: dict[str, object] = {}

    def other() -> None:
        try:
            loaded.set_lora(files["a"])
        except EngineStateError as e:
            results["set_lora"] = e
        try:
            results["generate"] = loaded.complete("y", max_tokens=1)
        except EngineStateError as e:
            results["generate"] = e
        results["tokenize"] = loaded.tokenize("q", add_special=False)

    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert isinstance(results["set_lora"], EngineStateError)
    assert isinstance(results["generate"], EngineStateError)
    assert results["tokenize"] == byte_tokens(b"q")
    assert "".join(it) == "bcd"


@needs_threads
def test_generation_consumed_in_another_thread(loaded: Engine, fake: FakeBackend) -> None:
    fake.script = byte_tokens(b"abc")
    it = loaded.generate("x", max_tokens=3)
    out: list[str] = []
    t = threading.Thread(target=lambda: out.extend(it))
    t.start()
    t.join()
    assert out == ["a", "b", "c"] and loaded.last_finish_reason == "length"


@needs_threads
def test_concurrent_calls_are_serialized(loaded: Engine, fake: FakeBackend, files) -> None:
    errors: list[BaseException] = []
    base = _logits(loaded)

    def lora_worker() -> None:
        try:
            for i in range(40):
                loaded.set_lora(files["a"], i / 10)
                loaded.set_lora(files["b"])
                loaded.remove_lora(files["a"])
                loaded.clear_loras()
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    def read_worker() -> None:
        try:
            for _ in range(40):
                assert len(loaded.logits("abc")) == N_VOCAB
                loaded.tokenize("abc")
                loaded.lora_metadata(files["a"])
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=f) for f in (lora_worker, read_worker, lora_worker)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert fake.violations == []  # never two calls inside the backend at once
    assert loaded.loras == {} and fake.live == set() and _logits(loaded) == base


# ---- async ----



def test_agenerate_matches_generate(loaded: Engine, fake: FakeBackend) -> None:
    fake.script = byte_tokens("héllo".encode())

    async def main() -> list[str]:
        return [c async for c in loaded.agenerate("x", max_tokens=6)]

    chunks = run_coroutine(main())
    assert "".join(chunks) == "héllo" and loaded.last_finish_reason == "length"
    fake.script = byte_tokens(b"abc")
    assert run_coroutine(loaded.acomplete("x", max_tokens=3)) == "abc"


def test_agenerate_validates_eagerly(loaded: Engine) -> None:
    with pytest.raises(ValueError, match="top_p"):
        loaded.agenerate("x", top_p=2.0)


def test_agenerate_aclose_releases(loaded: Engine, fake: FakeBackend, files) -> None:
    fake.script = byte_tokens(b"abcdef")

    async def main() -> str:
        it = loaded.agenerate("x", max_tokens=6)
        first = await it.__anext__()
        await it.aclose()
        return first

    assert run_coroutine(main()) == "a"
    assert loaded.last_finish_reason == "cancelled"
    assert loaded.set_lora(files["a"]) is True


@needs_threads
def test_agenerate_does_not_block_the_loop(loaded: Engine, fake: FakeBackend) -> None:
    fake.script = byte_tokens(b"ab")
    gate = threading.Event()
    seen = {}

    def hook() -> None:  # the token waits until a coroutine on the loop has run
        seen.setdefault("released", gate.wait(timeout=30))

    fake.on_next_token = hook

    async def opener() -> None:
        await asyncio.sleep(0)
        gate.set()

    async def main() -> str:
        task = asyncio.create_task(opener())
        out = "".join([c async for c in loaded.agenerate("x", max_tokens=2)])
        await task
        return out

    assert run_coroutine(main()) == "ab" and seen["released"] is True


@needs_threads
def test_agenerate_task_cancel_releases(loaded: Engine, fake: FakeBackend, files) -> None:
    fake.script = byte_tokens(b"abcdefgh")
    started = threading.Event()
    release = threading.Event()
    calls = {"n": 0}

    def hook() -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            started.set()
            release.wait(timeout=30)

    fake.on_next_token = hook

    async def consume() -> None:
        async for _ in loaded.agenerate("x", max_tokens=8):
            pass

    async def main() -> None:
        task = asyncio.create_task(consume())
        while not started.is_set():
            await asyncio.sleep(0.001)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        release.set()

    run_coroutine(main())
    for _ in range(3000):  # the worker finishes its token, then closes the generation
        if loaded.last_finish_reason is not None:
            break
        threading.Event().wait(0.01)
    assert loaded.last_finish_reason == "cancelled" and calls["n"] == 2
    assert loaded.set_lora(files["a"]) is True


# ---- the command line (pure Python parts; the engine is the fake) ----

@pytest.fixture
def cli_fake(monkeypatch: pytest.MonkeyPatch):
    from llamart import cli

    fake = FakeBackend()
    monkeypatch.setattr(cli, "_engine", lambda backend: Engine(fake))
    return cli, fake


def test_cli_lora_arg() -> None:
    from llamart.cli import _lora_arg

    assert _lora_arg("a.gguf") == ("a.gguf", 1.0)
    assert _lora_arg("a.gguf:0.5") == ("a.gguf", 0.5)
    assert _lora_arg("dir:x/a.gguf:-2") == ("dir:x/a.gguf", -2.0)
    assert _lora_arg("C:\\a.gguf") == ("C:\\a.gguf", 1.0)


def test_cli_generate(cli_fake, files, capsys) -> None:
    cli, fake = cli_fake
    fake.script = byte_tokens(b"abcdef")
    rc = cli.main(["generate", files["model"], "hi", "--lora", f"{files['a']}:0.5",
                   "--lora", files["b"], "--max-tokens", "3", "--seed", "5", "-v"])
    out, err = capsys.readouterr()
    assert rc == 0 and out == "abc\n" and "[finish: length" in err
    applied = [a[0] for n, a in fake.calls if n == "apply_adapters"]
    assert applied[-2:] == [[(files["a"], 0.5), (files["b"], 1.0)], []]  # then unloaded
    assert fake.seed == 5 and fake.disposed


def test_cli_generate_lora_unsupported_warns(cli_fake, files, capsys) -> None:
    cli, fake = cli_fake
    fake.lora = False
    fake.script = byte_tokens(b"ok")
    assert cli.main(["generate", files["model"], "hi", "--lora", files["a"],
                     "--max-tokens", "2"]) == 0
    out, err = capsys.readouterr()
    assert out == "ok\n" and "llamart: warning: LoRA adapters are not applied" in err


def test_cli_errors(cli_fake, files, capsys) -> None:
    cli, _ = cli_fake
    assert cli.main(["generate", files["missing"], "hi"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("llamart: error: ") and files["missing"] in err
    assert cli.main(["generate", files["model"], "hi", "--lora", files["bad_shape"]]) == 1
    assert "incorrect shape" in capsys.readouterr().err
    assert cli.main(["generate", files["model"], "hi", "--temperature", "-1"]) == 1
    assert "temperature" in capsys.readouterr().err
    with pytest.raises(SystemExit) as ei:
        cli.main(["generate", files["model"]])
    assert ei.value.code == 2


def test_cli_info(cli_fake, files, capsys) -> None:
    cli, _ = cli_fake
    assert cli.main(["info", files["model"]]) == 0
    out = capsys.readouterr().out
    assert "architecture: llama" in out and "parameters:   4,242" in out
    assert "general.name = fake" in out
    assert cli.main(["info", "--no-load", files["model"]]) == 0
    out = capsys.readouterr().out
    assert "tensors:" in out and "4 (F32 x4)" in out and "general.type = model" in out
    assert cli.main(["info", "--json", files["model"]]) == 0
    import json

    assert json.loads(capsys.readouterr().out)["n_vocab"] == N_VOCAB
    assert cli.main(["info", files["garbage"]]) == 1
    assert "not a GGUF file" in capsys.readouterr().err


def test_cli_lora_inspect(files, capsys) -> None:
    import json

    from llamart.cli import main

    assert main(["lora", "inspect", files["a"], "--base", files["model"]]) == 0
    out = capsys.readouterr().out
    for line in ("alpha:        4.0", "rank:         2", "targets:      attn_q, attn_v",
                 "task name:    domain", "fits base:    yes"):
        assert line in out
    assert main(["lora", "inspect", files["bad_shape"], "--base", files["model"]]) == 1
    out = capsys.readouterr().out
    assert "fits base:    no: tensor 'blk.0.attn_q.weight' has incorrect shape" in out
    assert main(["lora", "inspect", files["bad_arch"], "--base", files["model"], "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["fits"] is False and "gpt2" in data["reason"] and data["valid"] is True
    assert main(["lora", "inspect", files["b"]]) == 0
    assert "fits base" not in capsys.readouterr().out
    assert main(["lora", "inspect", files["model"]]) == 1
    assert "valid:        no: is not a LoRA adapter" in capsys.readouterr().out
    assert main(["lora", "inspect", files["garbage"]]) == 1
    assert "llamart: error:" in capsys.readouterr().err


# ---- the generation object ----

def test_generate_returns_a_generation(loaded: Engine, fake: FakeBackend) -> None:
    from llamart.generation import Generation

    fake.script = byte_tokens(b"abc") + [EOS]
    gen = loaded.generate("x", max_tokens=10, seed=3)
    assert isinstance(gen, Generation) and iter(gen) is gen
    assert gen.finish_reason is None and fake.counts["eval_prompt"] == 0  # nothing ran yet
    assert next(gen) == "a" and gen.finish_reason is None
    assert gen.usage == {"prompt_tokens": 2, "completion_tokens": 1, "cached_tokens": 0,
                         "seed": 3}
    assert gen.text() == "bc"
    assert gen.finish_reason == "stop" == loaded.last_finish_reason
    assert gen.usage == loaded.last_usage == {"prompt_tokens": 2, "completion_tokens": 3,
                                             "cached_tokens": 0, "seed": 3}
    assert "finish_reason='stop'" in repr(gen)


def test_generation_close_and_cancel(loaded: Engine, fake: FakeBackend, files) -> None:
    fake.script = byte_tokens(b"abcdef")
    gen = loaded.generate("x", max_tokens=6)
    assert next(gen) == "a"
    gen.close()
    assert gen.finish_reason == "cancelled" == loaded.last_finish_reason
    assert gen.usage["completion_tokens"] == 1
    assert loaded.set_lora(files["a"]) is True  # the engine is free again
    with pytest.raises(StopIteration):
        next(gen)

    fake.script = byte_tokens(b"abcdef")
    gen = loaded.generate("x", max_tokens=6)
    out = []
    for chunk in gen:
        out.append(chunk)
        if chunk == "b":
            assert gen.cancel() is True  # the generation's own cancel()
    assert out == ["a", "b"] and gen.finish_reason == "cancelled"
    assert gen.cancel() is False  # not streaming any more


def test_generation_closed_or_cancelled_before_it_starts(loaded: Engine,
                                                         fake: FakeBackend) -> None:
    fake.script = byte_tokens(b"ok")
    assert loaded.complete("x", max_tokens=2) == "ok"
    for end in ("close", "cancel"):
        gen = loaded.generate("x", max_tokens=3)
        if end == "close":
            assert gen.close() is None
        else:
            assert gen.cancel() is False  # nothing was streaming
        assert list(gen) == [] and gen.finish_reason == "cancelled"
        assert fake.counts["eval_prompt"] == 1  # it never reached the backend
        assert loaded.last_finish_reason == "length"  # the engine's record is untouched


def test_cancelling_one_generation_leaves_the_next_alone(loaded: Engine,
                                                          fake: FakeBackend) -> None:
    fake.script = byte_tokens(b"abcdef")
    first = loaded.generate("x", max_tokens=3)
    assert first.text() == "abc"
    assert first.cancel() is False  # ended: a late cancel() is a no-op
    second = loaded.generate("x", max_tokens=3)
    assert second.text() == "def" and second.finish_reason == "length"


def test_dropping_a_started_generation_frees_the_engine(loaded: Engine, fake: FakeBackend,
                                                        files) -> None:
    fake.script = byte_tokens(b"abcdef")
    gen = loaded.generate("x", max_tokens=6)
    next(gen)
    del gen  # no close(): the engine holds no reference to it, so it ends at once
    assert loaded.last_finish_reason == "cancelled"
    assert loaded.set_lora(files["a"]) is True


def test_async_generation_object(loaded: Engine, fake: FakeBackend) -> None:
    from llamart.async_generation import AsyncGeneration

    fake.script = byte_tokens(b"abc") + [EOS]
    agen = loaded.agenerate("x", max_tokens=5, seed=9)
    assert isinstance(agen, AsyncGeneration) and agen.finish_reason is None

    async def main() -> str:
        return await agen.text()

    assert run_coroutine(main()) == "abc"
    assert agen.finish_reason == "stop" and agen.usage["seed"] == 9
    assert agen.cancel() is False
    unstarted = loaded.agenerate("x", max_tokens=2)
    run_coroutine(unstarted.aclose())
    assert unstarted.finish_reason == "cancelled" and fake.counts["eval_prompt"] == 1


# ---- every entry point takes every sampling option ----

def _entry_points(e: Engine) -> dict[str, object]:
    msgs = [{"role": "user", "content": "hi"}]
    return {
        "generate": lambda **kw: "".join(e.generate("x", **kw)),
        "complete": lambda **kw: e.complete("x", **kw),
        "chat": lambda **kw: e.chat(msgs, **kw),
        "chat_stream": lambda **kw: "".join(e.chat(msgs, stream=True, **kw)),
        "agenerate": lambda **kw: run_coroutine(e.agenerate("x", **kw).text()),
        "acomplete": lambda **kw: run_coroutine(e.acomplete("x", **kw)),
        "achat": lambda **kw: run_coroutine(e.achat(msgs, **kw).text()),
    }


@pytest.mark.parametrize("entry", ["generate", "complete", "chat", "chat_stream", "agenerate",
                                   "acomplete", "achat"])
def test_every_entry_point_takes_every_option(loaded: Engine, fake: FakeBackend,
                                              entry: str) -> None:
    options = dict(max_tokens=2, temperature=0.5, top_k=7, top_p=0.5, min_p=0.25,
                   repeat_penalty=1.3, repeat_last_n=17, seed=11, stop=["zz"])
    fake.script = byte_tokens(b"ok")
    assert _entry_points(loaded)[entry](**options) == "ok"
    assert fake.sampler == GenerationParams(**dict(options, stop=("zz",)))
    assert fake.sampler.repeat_last_n == 17 and fake.seed == 11
    with pytest.raises(ValueError, match="repeat_last_n"):
        _entry_points(loaded)[entry](repeat_last_n=-1)
    with pytest.raises(TypeError, match="unexpected keyword argument 'top_q'"):
        _entry_points(loaded)[entry](top_q=0.5)


def test_sampling_options_declared_once() -> None:
    import dataclasses
    import inspect
    import typing

    from llamart.params import SamplingOptions

    names = [f.name for f in dataclasses.fields(GenerationParams)]
    assert set(typing.get_type_hints(SamplingOptions)) == set(names) - {"max_tokens"}
    for method in (Engine.generate, Engine.complete, Engine.chat, Engine.agenerate,
                   Engine.acomplete, Engine.achat):
        params = inspect.signature(method).parameters
        assert [n for n in params if n in names] == names, method.__name__
        assert params["repeat_last_n"].kind is inspect.Parameter.KEYWORD_ONLY
        assert params["repeat_last_n"].default == 64 and params["params"].default is None
    assert inspect.iscoroutinefunction(Engine.acomplete)


def test_positional_params_forms_still_work(loaded: Engine, fake: FakeBackend) -> None:
    fake.script = byte_tokens(b"abc")
    assert loaded.chat([{"role": "user", "content": "q"}],
                       GenerationParams(max_tokens=2, repeat_last_n=5)) == "ab"
    assert fake.sampler.repeat_last_n == 5
    with pytest.raises(TypeError, match="once"):
        loaded.complete("x", GenerationParams(), params=GenerationParams())
    with pytest.raises(TypeError, match="not both"):
        loaded.complete("x", repeat_last_n=3, params=GenerationParams())


def test_cli_sampling_options_come_from_the_params(cli_fake, files, capsys) -> None:
    import dataclasses

    cli, fake = cli_fake
    with pytest.raises(SystemExit):
        cli.main(["generate", "--help"])
    help_text = capsys.readouterr().out
    for f in dataclasses.fields(GenerationParams):
        assert "--" + f.name.replace("_", "-") in help_text
        assert f.metadata["help"].split()[0] in help_text
    fake.script = byte_tokens(b"abcdef")
    rc = cli.main(["generate", files["model"], "hi", "--max-tokens", "4", "--temperature",
                   "0.5", "--top-k", "3", "--top-p", "0.9", "--min-p", "0.1",
                   "--repeat-penalty", "1.2", "--repeat-last-n", "9", "--seed", "4",
                   "--stop", "cd", "--stop", "zz"])
    assert rc == 0 and capsys.readouterr().out == "ab\n"
    assert fake.sampler == GenerationParams(max_tokens=4, temperature=0.5, top_k=3, top_p=0.9,
                                            min_p=0.1, repeat_penalty=1.2, repeat_last_n=9,
                                            seed=4, stop=("cd", "zz"))
    assert cli.main(["generate", files["model"], "hi", "--repeat-last-n", "-2"]) == 1
    assert "repeat_last_n" in capsys.readouterr().err


def test_cli_chat_streams(cli_fake, files, capsys) -> None:
    cli, fake = cli_fake
    fake.script = byte_tokens(b"Hi!") + [EOS]
    assert cli.main(["generate", files["model"], "hello", "--chat", "-v"]) == 0
    out, err = capsys.readouterr()
    assert out == "Hi!\n" and "[finish: stop" in err
    text, _add, _parse = [a for n, a in fake.calls if n == "tokenize"][-1]
    assert text == "<s>user: hello</s><s>assistant: "


# ---- chat: streaming, and the template in public ----

def test_achat_streams_the_reply(loaded: Engine, fake: FakeBackend) -> None:
    from llamart.async_generation import AsyncGeneration

    messages = [{"role": "user", "content": "hi"}]

    async def collect() -> list[str]:
        gen = loaded.achat(messages, max_tokens=20, temperature=0.0)
        assert isinstance(gen, AsyncGeneration)
        return [chunk async for chunk in gen]

    fake.script = byte_tokens(b"Hi there") + [EOS]
    chunks = run_coroutine(collect())
    assert "".join(chunks) == "Hi there" and len(chunks) == 8
    assert loaded.last_finish_reason == "stop"
    text, _add, parse = [a for n, a in fake.calls if n == "tokenize"][-1]
    assert text == "<s>user: hi</s><s>assistant: " and parse is True


def test_chat_stream(loaded: Engine, fake: FakeBackend) -> None:
    from llamart.generation import Generation

    messages = [{"role": "user", "content": "hi"}]
    fake.script = byte_tokens(b"Hi there") + [EOS]
    gen = loaded.chat(messages, max_tokens=20, stream=True)
    assert isinstance(gen, Generation)
    chunks = list(gen)
    assert "".join(chunks) == "Hi there" and len(chunks) == 8
    assert gen.finish_reason == "stop"
    fake.script = byte_tokens(b"Hi there") + [EOS]
    assert loaded.chat(messages, max_tokens=20) == "Hi there"  # the same, not streamed
    prompts = [a[0] for n, a in fake.calls if n == "eval_prompt"]
    assert prompts[-1] == prompts[-2]
    with pytest.raises(TypeError, match="stream"):
        loaded.chat(messages, stream=1)  # type: ignore[call-overload]


def test_apply_chat_template(loaded: Engine, fake: FakeBackend) -> None:
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    assert loaded.apply_chat_template(messages) == \
        "<s>system: be brief</s><s>user: hi</s><s>assistant: "
    assert loaded.apply_chat_template(messages, add_generation_prompt=False) == \
        "<s>system: be brief</s><s>user: hi</s>"
    with pytest.raises(ValueError, match=r"messages\[0\] has no 'content'"):
        loaded.apply_chat_template([{"role": "user"}])
    with pytest.raises(TypeError, match="add_generation_prompt"):
        loaded.apply_chat_template(messages, 1)  # type: ignore[arg-type]
    fake.script = byte_tokens(b"abc")
    it = loaded.generate("x", max_tokens=3)
    next(it)
    assert loaded.apply_chat_template(messages).endswith("assistant: ")  # a reading call
    it.close()


def test_apply_chat_template_errors(engine: Engine, files) -> None:
    with pytest.raises(EngineStateError, match="no model"):
        engine.apply_chat_template([{"role": "user", "content": "hi"}])
    bare = write_model(os.path.join(files["dir"], "no_template.gguf"), template=None)
    with Engine(FakeBackend()) as e:
        e.load_model(bare)
        with pytest.raises(ChatTemplateError, match="no_template.gguf has no chat template"):
            e.apply_chat_template([{"role": "user", "content": "hi"}])
        assert e.apply_chat_template([{"role": "user", "content": "hi"}],
                                     chat_template=CHAT_TEMPLATE) == "<s>user: hi</s><s>assistant: "
        e.load_model(bare, chat_template="{{ messages[0].content }}!")
        assert e.chat([{"role": "user", "content": "q"}], max_tokens=1) is not None
        with pytest.raises(ChatTemplateError, match="line 1"):
            e.apply_chat_template([{"role": "user", "content": "hi"}], chat_template="{% if %}")


# ---- vocabulary-only loading ----

def test_vocab_only(engine: Engine, fake: FakeBackend, files, tmp_path) -> None:
    vocab = write_gguf(str(tmp_path / "vocab.gguf"),
                       {"general.architecture": "llama", "general.type": "model",
                        "tokenizer.chat_template": CHAT_TEMPLATE}, [])
    with pytest.raises(ModelLoadError, match="has no tensors"):
        engine.load_model(vocab)
    with pytest.raises(TypeError, match="vocab_only"):
        engine.load_model(vocab, vocab_only=1)  # type: ignore[arg-type]
    engine.load_model(vocab, vocab_only=True)
    assert fake.model_params.vocab_only is True and fake.loaded_path == vocab
    assert engine.tokenize("ab", add_special=False) == byte_tokens(b"ab")
    assert engine.detokenize(byte_tokens(b"ab")) == "ab"
    msgs = [{"role": "user", "content": "hi"}]
    assert engine.apply_chat_template(msgs).endswith("assistant: ")
    needs_weights = {
        "generate": lambda: engine.generate("x"), "complete": lambda: engine.complete("x"),
        "chat": lambda: engine.chat(msgs), "stream": lambda: engine.chat(msgs, stream=True),
        "agenerate": lambda: engine.agenerate("x"),
        "acomplete": lambda: run_coroutine(engine.acomplete("x")),
        "logits": lambda: engine.logits("x"), "set_lora": lambda: engine.set_lora(files["a"]),
    }
    for name, call in needs_weights.items():
        with pytest.raises(EngineStateError, match="vocabulary-only") as ei:
            call()
        assert vocab in str(ei.value), name
    assert fake.counts["eval_prompt"] == 0 and fake.counts["load_adapter"] == 0
    assert engine.remove_lora(files["a"]) is False and engine.loras == {}
    engine.load_model(files["model"], ModelParams(vocab_only=True))  # a full model, too
    assert fake.model_params.vocab_only is True
    engine.load_model(files["model"])  # loaded again with its weights: everything works
    fake.script = byte_tokens(b"ok")
    assert engine.complete("x", max_tokens=2) == "ok" and engine.set_lora(files["a"])


# ---- the adapter set ----

@pytest.fixture
def adapter_set(fake: FakeBackend, files, tmp_path, monkeypatch: pytest.MonkeyPatch):
    from llamart.adapter_set import AdapterSet

    monkeypatch.chdir(tmp_path)  # adapters "a", "b", "c" are files here (the fake opens them)
    for name in ("a", "b", "c"):
        (tmp_path / name).write_bytes(b"GGUF")
    fake.load_model(files["model"], ModelParams(), 1)
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


# ---- issue 22: a generation refused at its start ----

def test_generation_refused_at_its_start_ends_with_error(loaded: Engine, fake: FakeBackend,
                                                          files) -> None:
    fake.script = byte_tokens(b"ab")
    assert loaded.complete("x", max_tokens=2) == "ab"
    stale = loaded.generate("x", max_tokens=2)
    loaded.load_model(files["model2"], n_ctx=64)
    with pytest.raises(EngineStateError, match="model changed"):
        next(stale)
    assert stale.finish_reason == "error"
    stale.close()
    assert stale.finish_reason == "error"  # close() does not turn it into "cancelled"
    assert loaded.last_finish_reason == "length"  # the engine's last generation is untouched

    fake.script = byte_tokens(b"cd")
    waiting = loaded.generate("y", max_tokens=2)
    running = loaded.generate("z", max_tokens=2)
    assert next(running) == "c"
    with pytest.raises(EngineStateError, match="generation is streaming"):
        next(waiting)
    assert waiting.finish_reason == "error"
    assert "".join(running) == "d" and running.finish_reason == "length"


# ---- issue 22: chat messages in the shapes transformers accepts ----

TOOL_TEMPLATE = ("{% for m in messages %}[{{ m.role }}"
                 "{% if m.content is string %}:{{ m.content }}"
                 "{% elif m.content %}:{% for p in m.content %}{{ p.text }}{% endfor %}{% endif %}"
                 "{% for c in m.tool_calls or [] %} call {{ c.function.name }}"
                 "({{ c.function.arguments | tojson }}){% endfor %}"
                 "{% if m.tool_call_id %} id={{ m.tool_call_id }}{% endif %}]{% endfor %}")


def test_chat_accepts_tool_calls_tool_results_and_content_parts(engine: Engine,
                                                                 fake: FakeBackend,
                                                                 files) -> None:
    loaded = engine
    loaded.load_model(files["model"], n_ctx=256)
    messages = [
        {"role": "user", "content": [{"type": "text", "text": "weather "},
                                     {"type": "text", "text": "in Paris?"}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"type": "function", "function": {"name": "weather",
                                              "arguments": {"city": "Paris"}}}]},
        {"role": "tool", "content": "22C", "tool_call_id": "1"},
    ]
    prompt = loaded.apply_chat_template(messages, chat_template=TOOL_TEMPLATE)
    assert prompt == ('[user:weather in Paris?][assistant call weather({"city": "Paris"})]'
                      '[tool:22C id=1]')
    fake.script = byte_tokens(b"sunny") + [EOS]
    assert loaded.chat(messages, chat_template=TOOL_TEMPLATE) == "sunny"
    text = [a[0] for n, a in fake.calls if n == "tokenize"][-1]
    assert text == prompt
    with pytest.raises(TypeError, match=r"messages\[0\]\['content'\]\[0\]"):
        loaded.chat([{"role": "user", "content": ["hi"]}])


# ---- issue 22: a keyword beside params= is never ignored ----

def test_a_keyword_beside_params_is_refused_even_at_its_default(loaded: Engine,
                                                               fake: FakeBackend,
                                                               files) -> None:
    p = GenerationParams(max_tokens=10)
    with pytest.raises(TypeError, match=r"not both \(got max_tokens=\)"):
        loaded.generate("x", max_tokens=64, params=p)
    for name, call in _entry_points(loaded).items():
        with pytest.raises(TypeError, match=r"not both \(got temperature=\)"):
            call(temperature=0.8, params=p)
        with pytest.raises(TypeError, match=r"not both \(got max_tokens=\)"):
            call(max_tokens=64, params=p)
        fake.script = byte_tokens(b"ok")
        assert call(params=GenerationParams(max_tokens=2)) == "ok", name
    with pytest.raises(TypeError, match=r"not both \(got n_ctx=\)"):
        loaded.load_model(files["model"], n_ctx=2048, params=ModelParams(n_ctx=64))
    with pytest.raises(TypeError, match=r"not both \(got use_mmap=\)"):
        loaded.load_model(files["model"], ModelParams(n_ctx=64), use_mmap=True)
    assert fake.counts["load_model"] == 1  # only the fixture's load


def test_the_defaults_are_the_dataclasses(engine: Engine, fake: FakeBackend, files) -> None:
    import inspect

    from llamart.params import UNSET

    engine.load_model(files["model"])
    assert fake.model_params == ModelParams()
    sig = inspect.signature(Engine.load_model).parameters
    assert {k: sig[k].default for k in ("n_ctx", "n_batch", "use_mmap", "chat_template")} == \
        {"n_ctx": 2048, "n_batch": 512, "use_mmap": True, "chat_template": None}
    assert inspect.signature(Engine.achat).parameters["max_tokens"].default == 64
    assert repr(UNSET) == "UNSET" and type(UNSET)() is UNSET
    fake.script = byte_tokens(b"a" * 70)
    engine.complete("x")
    assert fake.sampler == GenerationParams()


# ---- issue 22: errors name the method called ----

def test_a_bad_keyword_to_achat_names_achat(loaded: Engine) -> None:
    msgs = [{"role": "user", "content": "hi"}]
    with pytest.raises(TypeError, match=r"^achat\(\) got an unexpected keyword argument 'top_q'"):
        loaded.achat(msgs, top_q=0.5)
    with pytest.raises(TypeError, match=r"^chat\(\) got an unexpected keyword argument 'top_q'"):
        loaded.chat(msgs, top_q=0.5)
