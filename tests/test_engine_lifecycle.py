"""The Engine's lifecycle: construction, capabilities and error mapping, loading and
unloading models, disposing, tokenizing, vocabulary-only loads.

Tested against llamart.testing.FakeBackend (pure Python): no numpy, gguf or llama.cpp,
so this file runs unchanged in Pyodide. The fixtures (``fake``, ``fake_files``,
``fake_engine``, ``fake_loaded``) are in tests/conftest.py.
"""

from __future__ import annotations

import os
import sys

import pytest

import llamart
from llamart import (
    AdapterError,
    Capabilities,
    ContextOverflowError,
    Engine,
    EngineStateError,
    LlamartError,
    LoraUnsupportedWarning,
    ModelLoadError,
    ModelParams,
    UnsupportedCapabilityError,
    _version,
)
from llamart.bindings.base import BackendError, ErrorKind
from llamart.engine import default_backend_name, default_threads
from llamart.errors import from_backend_error
from llamart.testing.fake import BOS, N_VOCAB, FakeBackend, byte_tokens, word_token
from llamart.testing.gguf_writer import CHAT_TEMPLATE, write_gguf
from tests.support.fake_engine import logits_of
from tests.support.platform_support import run_coroutine

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


def test_capabilities_without_model(fake_engine: Engine) -> None:
    caps = fake_engine.capabilities
    assert isinstance(caps, Capabilities)
    assert caps.backend == "fake" and caps.lora is True and caps.lora_reason is None
    assert fake_engine.model_info is None and fake_engine.loras == {}


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

def test_load_model_reports_info(fake_engine: Engine, fake: FakeBackend, fake_files) -> None:
    info = fake_engine.load_model(fake_files["model"], n_ctx=128, n_batch=32, n_threads=2)
    assert info is fake_engine.model_info and info.n_ctx == 128 and info.n_vocab == N_VOCAB
    assert fake.model_params == ModelParams(n_ctx=128, n_batch=32, n_threads=2)
    assert fake.n_threads == 2
    assert fake_engine.metadata["general.name"] == "fake"
    fake_engine.metadata["general.name"] = "changed"  # a copy
    assert fake_engine.metadata["general.name"] == "fake"


def test_default_threads_used(fake_engine: Engine, fake: FakeBackend, fake_files) -> None:
    fake_engine.load_model(fake_files["model"])
    assert fake.n_threads == default_threads()
    if hasattr(os, "sched_getaffinity") and sys.platform != "emscripten":
        assert fake.n_threads == len(os.sched_getaffinity(0))


def test_model_params_object(fake_engine: Engine, fake: FakeBackend, fake_files) -> None:
    fake_engine.load_model(fake_files["model"], ModelParams(n_ctx=96, n_threads=1))
    assert fake.model_params.n_ctx == 96
    fake_engine.load_model(fake_files["model"], params=ModelParams(n_ctx=80, n_threads=1))
    assert fake.model_params.n_ctx == 80
    with pytest.raises(TypeError, match="not both"):
        fake_engine.load_model(fake_files["model"], n_ctx=10, params=ModelParams())


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
def test_load_model_params_validated(fake_engine, fake, fake_files, kwargs, exc, name) -> None:
    with pytest.raises(exc, match=name):
        fake_engine.load_model(fake_files["model"], **kwargs)
    assert fake.counts["load_model"] == 0


def test_load_model_bad_files(fake_engine: Engine, fake: FakeBackend, fake_files) -> None:
    with pytest.raises(TypeError, match="path"):
        fake_engine.load_model(123)  # type: ignore[arg-type]
    with pytest.raises(FileNotFoundError) as ei:
        fake_engine.load_model(fake_files["missing"])
    assert ei.value.filename == fake_files["missing"] and fake_files["missing"] in str(ei.value)
    with pytest.raises(IsADirectoryError):
        fake_engine.load_model(fake_files["dir"])
    with pytest.raises(ModelLoadError) as ei:
        fake_engine.load_model(fake_files["garbage"])
    assert str(ei.value).startswith(fake_files["garbage"] + ": ") and "GGUF" in str(ei.value)
    with pytest.raises(ModelLoadError, match="adapter"):
        fake_engine.load_model(fake_files["a"])
    assert fake.counts["load_model"] == 0  # none of these reached the backend
    fake_engine.load_model(fake_files["model"])  # and the engine still works
    fake.script = byte_tokens(b"ok")
    assert fake_engine.complete("x", max_tokens=2) == "ok"


def test_backend_load_failure_keeps_previous_model(fake_loaded: Engine, fake: FakeBackend,
                                                   fake_files) -> None:
    fake_loaded.set_lora(fake_files["a"], 0.5)
    before = logits_of(fake_loaded)
    fake.fail_next("load_model", ErrorKind.LOAD, "unknown model architecture")
    with pytest.raises(ModelLoadError) as ei:
        fake_loaded.load_model(fake_files["model2"])
    assert str(ei.value) == f"{fake_files['model2']}: unknown model architecture"
    assert fake_loaded.model_info.path == fake_files["model"]
    assert fake_loaded.loras == {fake_files["a"]: 0.5}
    assert logits_of(fake_loaded) == before


def test_reload_unloads_first_and_forgets_adapters(fake_loaded: Engine, fake: FakeBackend,
                                                   fake_files) -> None:
    fake_loaded.set_lora(fake_files["a"])
    fake_loaded.load_model(fake_files["model2"])
    assert fake.counts["unload_model"] == 1 and fake.live == set()
    assert fake_loaded.loras == {} and fake_loaded.model_info.path == fake_files["model2"]
    fake_loaded.set_lora(fake_files["a"])
    assert fake.adapter_loads[fake_files["a"]] == 2  # adapters must be applied again


def test_unload_and_dispose(fake_engine: Engine, fake: FakeBackend, fake_files) -> None:
    fake_engine.unload_model()  # no model: no-op
    fake_engine.load_model(fake_files["model"])
    fake_engine.set_lora(fake_files["a"])
    fake_engine.set_lora(fake_files["b"])
    fake_engine.unload_model()
    assert fake_engine.model_info is None and fake_engine.loras == {} and fake.live == set()
    assert fake.loaded_path is None
    with pytest.raises(EngineStateError, match="no model"):
        fake_engine.generate("hi")
    with pytest.raises(EngineStateError, match="no model"):
        fake_engine.set_lora(fake_files["a"])
    fake_engine.dispose()
    fake_engine.dispose()  # idempotent
    assert fake.counts["dispose"] == 1 and fake_engine.disposed


def test_use_after_dispose(fake_engine: Engine, fake_files) -> None:
    fake_engine.load_model(fake_files["model"])
    fake_engine.dispose()
    for call in [lambda: fake_engine.load_model(fake_files["model"]),
                 lambda: fake_engine.generate("x"),
                 lambda: fake_engine.set_lora(fake_files["a"]), lambda: fake_engine.tokenize("x"),
                 lambda: fake_engine.metadata, lambda: fake_engine.logits("x"),
                 lambda: fake_engine.remove_lora(fake_files["a"]), fake_engine.clear_loras,
                 fake_engine.unload_model, lambda: fake_engine.__enter__()]:
        with pytest.raises(EngineStateError, match="disposed"):
            call()
    assert fake_engine.loras == {} and fake_engine.capabilities.backend == "fake"


def test_with_block_disposes(fake: FakeBackend, fake_files) -> None:
    with Engine(fake) as e:
        e.load_model(fake_files["model"])
        e.set_lora(fake_files["a"])
    assert e.disposed and fake.disposed and fake.loaded_path is None and fake.live == set()
    assert fake.violations == []


# ---- text ----

def test_tokenize_detokenize(fake_loaded: Engine) -> None:
    toks = fake_loaded.tokenize("hé")
    assert toks == [BOS] + byte_tokens("hé".encode())
    assert fake_loaded.tokenize("hé", add_special=False) == byte_tokens("hé".encode())
    assert fake_loaded.tokenize("<s>", parse_special=True) == [BOS, BOS]
    assert fake_loaded.detokenize(toks) == "hé"
    assert fake_loaded.detokenize([word_token(b"hello"), word_token(b" world")]) == "hello world"
    assert fake_loaded.detokenize(byte_tokens(b"\xff")) == "\ufffd"
    with pytest.raises(ValueError, match=rf"tokens\[1\] = {N_VOCAB}"):
        fake_loaded.detokenize([5, N_VOCAB])
    with pytest.raises(ValueError, match=r"tokens\[0\] = -1"):
        fake_loaded.detokenize([-1])
    with pytest.raises(TypeError, match=r"tokens\[0\]"):
        fake_loaded.detokenize([True])
    with pytest.raises(TypeError, match="tokens"):
        fake_loaded.detokenize("abc")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="text"):
        fake_loaded.tokenize(b"abc")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="add_special"):
        fake_loaded.tokenize("abc", add_special=1)  # type: ignore[arg-type]


# ---- vocabulary-only loading ----

def test_vocab_only(fake_engine: Engine, fake: FakeBackend, fake_files, tmp_path) -> None:
    vocab = write_gguf(str(tmp_path / "vocab.gguf"),
                       {"general.architecture": "llama", "general.type": "model",
                        "tokenizer.chat_template": CHAT_TEMPLATE}, [])
    with pytest.raises(ModelLoadError, match="has no tensors"):
        fake_engine.load_model(vocab)
    with pytest.raises(TypeError, match="vocab_only"):
        fake_engine.load_model(vocab, vocab_only=1)  # type: ignore[arg-type]
    fake_engine.load_model(vocab, vocab_only=True)
    assert fake.model_params.vocab_only is True and fake.loaded_path == vocab
    assert fake_engine.tokenize("ab", add_special=False) == byte_tokens(b"ab")
    assert fake_engine.detokenize(byte_tokens(b"ab")) == "ab"
    msgs = [{"role": "user", "content": "hi"}]
    assert fake_engine.apply_chat_template(msgs).endswith("assistant: ")
    needs_weights = {
        "generate": lambda: fake_engine.generate("x"),
        "complete": lambda: fake_engine.complete("x"),
        "chat": lambda: fake_engine.chat(msgs),
        "stream": lambda: fake_engine.chat(msgs, stream=True),
        "agenerate": lambda: fake_engine.agenerate("x"),
        "acomplete": lambda: run_coroutine(fake_engine.acomplete("x")),
        "logits": lambda: fake_engine.logits("x"),
        "set_lora": lambda: fake_engine.set_lora(fake_files["a"]),
    }
    for name, call in needs_weights.items():
        with pytest.raises(EngineStateError, match="vocabulary-only") as ei:
            call()
        assert vocab in str(ei.value), name
    assert fake.counts["eval_prompt"] == 0 and fake.counts["load_adapter"] == 0
    assert fake_engine.remove_lora(fake_files["a"]) is False and fake_engine.loras == {}
    fake_engine.load_model(fake_files["model"], ModelParams(vocab_only=True))  # a full model, too
    assert fake.model_params.vocab_only is True
    fake_engine.load_model(fake_files["model"])  # loaded again with its weights: everything works
    fake.script = byte_tokens(b"ok")
    assert fake_engine.complete("x", max_tokens=2) == "ok" and fake_engine.set_lora(fake_files["a"])
