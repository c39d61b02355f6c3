"""The Backend protocol's contract, checked on the native and WebAssembly backends and on the
FakeBackend users test with (llamart.testing): the fake must behave as the real ones do on every
call llamart/bindings/base.py lists, so tests written against it hold on llama.cpp.

The native backend runs natively, the wasm one in Pyodide (``python -m tools.pyodide_runner
--runtime node|chromium``); each is skipped, saying so, where it cannot run. No numpy or gguf.
"""

from __future__ import annotations

import array
import math
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from llamart.bindings.base import (
    Backend,
    BackendError,
    Capabilities,
    ErrorKind,
    ModelInfo,
    StepEnd,
)
from llamart.params import GenerationParams, ModelParams
from llamart.testing import FakeBackend

PROMPT = "Once upon a time"
N_CTX = 64  # asked for; a backend may round it up (llama.cpp pads to 256) and says so in info
IN_PYODIDE = sys.platform == "emscripten"
WHERE = {
    "native": None if not IN_PYODIDE else "the native backend needs CPython and libllamart.so",
    "wasm": None if IN_PYODIDE else "the wasm backend runs in Pyodide: python -m "
                                    "tools.pyodide_runner --runtime node|chromium",
    "fake": None,
}


def _make(name: str) -> Backend:
    if name == "fake":
        return FakeBackend()
    from llamart.engine.engine import (
        _resolve_backend,  # the name -> Backend table Engine(name) uses
    )

    return _resolve_backend(name)


@pytest.fixture(params=sorted(WHERE))
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    reason = WHERE[request.param]
    if reason:
        pytest.skip(reason)
    b = _make(request.param)
    try:
        yield b
    finally:
        b.unload_model()
        b.dispose()


@pytest.fixture
def loaded(backend: Backend, fx: dict[str, str]) -> tuple[Backend, ModelInfo]:
    return backend, backend.load_model(fx["model_f32"], ModelParams(n_ctx=N_CTX), 1)


def _kind(call: Any) -> str:
    with pytest.raises(BackendError) as info:
        call()
    assert isinstance(info.value.reason, str) and info.value.reason
    return info.value.kind


def _greedy() -> GenerationParams:
    return GenerationParams(temperature=0.0)


def test_is_a_backend_reporting_its_capabilities(backend: Backend) -> None:
    assert isinstance(backend, Backend)
    caps = backend.capabilities
    assert isinstance(caps, Capabilities) and caps.backend == backend.name
    assert isinstance(caps.lora, bool) and (caps.lora_reason is None) == caps.lora


def test_load_model_reports_the_model(loaded: tuple[Backend, ModelInfo], fx: dict[str, str]):
    _, info = loaded
    assert isinstance(info, ModelInfo) and info.path == fx["model_f32"]
    assert info.n_ctx >= N_CTX and info.n_vocab > 3
    assert 0 <= info.bos < info.n_vocab and 0 <= info.eos < info.n_vocab
    assert info.metadata["general.architecture"] == "llama"


def test_calls_need_a_model(backend: Backend, fx: dict[str, str]) -> None:
    assert _kind(lambda: backend.tokenize(PROMPT, True, False)) == ErrorKind.STATE
    assert _kind(lambda: backend.load_model(fx["model_f32"] + ".missing",
                                            ModelParams(n_ctx=N_CTX), 1)) == ErrorKind.LOAD
    backend.load_model(fx["model_f32"], ModelParams(n_ctx=N_CTX), 1)  # usable after a failure
    backend.unload_model()
    assert _kind(lambda: backend.tokenize(PROMPT, True, False)) == ErrorKind.STATE
    assert _kind(backend.logits) == ErrorKind.STATE
    assert _kind(lambda: backend.embed([[1]], None, True)) == ErrorKind.STATE


def test_tokenize_and_detokenize(loaded: tuple[Backend, ModelInfo]) -> None:
    b, info = loaded
    plain = b.tokenize(PROMPT, False, False)
    assert plain and all(0 <= t < info.n_vocab for t in plain)
    assert b.tokenize(PROMPT, True, False) == [info.bos, *plain]
    assert b.detokenize(plain) == PROMPT.encode()
    assert b.detokenize([info.bos, *plain]) == PROMPT.encode()  # specials are not rendered
    assert b.token_to_piece(info.bos) == b"" and b.token_to_piece(info.eos) == b""
    assert b"".join(b.token_to_piece(t) for t in plain).strip() == PROMPT.encode()
    assert b.tokenize("<s>", False, True) == [info.bos]  # parse_special: the control token
    assert info.bos not in b.tokenize("<s>", False, False)  # otherwise: plain text


def test_eval_and_logits(loaded: tuple[Backend, ModelInfo]) -> None:
    b, info = loaded
    tokens = b.tokenize(PROMPT, True, False)
    assert _kind(b.logits) == ErrorKind.STATE  # nothing evaluated yet
    assert _kind(lambda: b.eval_prompt([info.n_vocab + 5])) == ErrorKind.ARG
    b.reset()
    b.eval_prompt(tokens)
    first = b.logits()
    assert isinstance(first, array.array) and first.typecode == "f"
    assert len(first) == info.n_vocab and all(math.isfinite(x) for x in first)
    expected = first.tobytes()
    first[0] += 1000.0  # a copy: changing it changes nothing
    b.reset()
    assert b.eval_prompt(tokens[:2]) == 0
    assert b.eval_prompt(tokens) == 2  # in two calls (the rest after the cached two): the same
    assert b.logits().tobytes() == expected
    b.reset()
    assert _kind(b.logits) == ErrorKind.STATE
    assert _kind(lambda: b.eval_prompt([tokens[-1]] * (info.n_ctx + 1))) == ErrorKind.CONTEXT


def _close(a: array.array, b: array.array, rel: float = 1e-4) -> bool:
    """Equal within float noise: a prefix evaluated in other batch shapes rounds differently
    (llama.cpp picks other kernels for a one-token batch)."""
    scale = max(max(abs(x) for x in b), 1.0)
    return max(abs(x - y) for x, y in zip(a, b, strict=True)) <= rel * scale


def test_eval_prompt_reuses_the_cached_prefix(loaded: tuple[Backend, ModelInfo]) -> None:
    b, info = loaded
    tokens = b.tokenize(PROMPT, True, False)
    b.reset()
    assert b.eval_prompt(tokens) == 0
    expected = b.logits()  # the prompt evaluated once on a clean cache
    other = b.tokenize(" and then", False, False)
    b.reset()
    assert b.eval_prompt(tokens) == 0  # nothing cached: all evaluated again, the same
    assert b.logits().tobytes() == expected.tobytes()
    assert b.eval_prompt(tokens) == len(tokens)  # exactly what was evaluated: nothing to do
    assert b.logits().tobytes() == expected.tobytes()
    assert b.eval_prompt(tokens + other) == len(tokens)  # the prompt, then more
    assert b.eval_prompt(tokens) == len(tokens) - 1  # cached, then more: the last one again
    assert _close(b.logits(), expected)
    assert b.eval_prompt(tokens[:2] + other) == 2  # a shared prefix, then a new suffix
    b.reset()
    assert b.eval_prompt(tokens[:2] + other) == 0
    fresh_other = b.logits()
    assert not _close(fresh_other, expected)
    assert b.eval_prompt(tokens) == 2  # back: the cache dropped the old suffix
    assert _close(b.logits(), expected)
    # refused before anything changes: the cache still holds the prompt
    assert _kind(lambda: b.eval_prompt([])) == ErrorKind.ARG
    assert _kind(lambda: b.eval_prompt([info.n_vocab + 5])) == ErrorKind.ARG
    assert _kind(lambda: b.eval_prompt([tokens[-1]] * (info.n_ctx + 1))) == ErrorKind.CONTEXT
    assert b.eval_prompt(tokens) == len(tokens)
    b.reset()
    assert b.eval_prompt(tokens) == 0


def test_greedy_sampling_follows_the_logits(loaded: tuple[Backend, ModelInfo]) -> None:
    b, info = loaded
    b.eval_prompt(b.tokenize(PROMPT, True, False))
    logits = b.logits()
    b.sampler_init(_greedy(), 1)
    tokens, end = b.next_tokens(4, True)
    assert tokens[0] == max(range(info.n_vocab), key=logits.__getitem__)
    assert (len(tokens) == 4 and end == StepEnd.FULL) or end == StepEnd.EOG
    assert all(0 <= t < info.n_vocab and t != info.eos for t in tokens)


def test_seeded_sampling_repeats(loaded: tuple[Backend, ModelInfo]) -> None:
    b, _ = loaded
    prompt = b.tokenize(PROMPT, True, False)
    runs = []
    for _ in range(2):
        b.reset()
        b.eval_prompt(prompt)
        b.sampler_init(GenerationParams(temperature=0.9, top_k=0, top_p=1.0), 1234)
        b.sampler_accept(prompt)
        runs.append(b.next_tokens(3, True) + b.next_tokens(3, False))
    assert runs[0] == runs[1]


def test_sampling_needs_logits(loaded: tuple[Backend, ModelInfo]) -> None:
    b, _ = loaded
    b.sampler_init(_greedy(), 1)
    assert _kind(lambda: b.next_tokens(1, True)) == ErrorKind.STATE


def test_cancel_stops_the_next_call_only(loaded: tuple[Backend, ModelInfo]) -> None:
    b, _ = loaded
    b.eval_prompt(b.tokenize(PROMPT, True, False))
    b.sampler_init(_greedy(), 1)
    b.request_cancel()
    assert b.next_tokens(3, True) == ([], StepEnd.CANCELLED)
    tokens, end = b.next_tokens(2, True)
    assert end in (StepEnd.FULL, StepEnd.EOG) and len(tokens) <= 2


def test_a_new_backend_has_no_pending_cancel(backend: Backend, fx: dict[str, str],
                                             request: pytest.FixtureRequest) -> None:
    for _ in range(3):  # each a new backend, where the previous one's memory was freed
        b = _make(backend.name)
        try:
            b.load_model(fx["model_f32"], ModelParams(n_ctx=N_CTX), 1)
            b.eval_prompt(b.tokenize(PROMPT, True, False))
            b.sampler_init(_greedy(), 1)
            assert b.next_tokens(1, True)[1] != StepEnd.CANCELLED
        finally:
            b.unload_model()
            b.dispose()


def test_full_context_ends_sampling(loaded: tuple[Backend, ModelInfo]) -> None:
    b, info = loaded
    word = b.tokenize(" the", False, False)[-1]
    b.eval_prompt([info.bos] + [word] * (info.n_ctx - 3))  # two cells left
    b.sampler_init(_greedy(), 1)
    tokens, end = b.next_tokens(10, True)
    if end != StepEnd.EOG:  # two tokens fill the context; the third is returned unevaluated
        assert (len(tokens), end) == (3, StepEnd.CONTEXT)


def test_structured_output(loaded: tuple[Backend, ModelInfo]) -> None:
    b, _ = loaded
    caps = b.capabilities
    assert isinstance(caps.grammar, bool) and isinstance(caps.json_schema, bool)
    if not caps.grammar:  # the Engine never calls these then; a backend still answers them
        assert _kind(lambda: b.check_grammar('root ::= "x"')) == ErrorKind.UNSUPPORTED
        assert _kind(lambda: b.grammar_match('root ::= "x"', "x")) == ErrorKind.UNSUPPORTED
        assert _kind(lambda: b.json_schema_to_grammar("{}")) == ErrorKind.UNSUPPORTED
        return
    grammar = 'root ::= ("yes" | "no")'
    b.check_grammar(grammar)
    assert _kind(lambda: b.check_grammar('root ::= "yes')) == ErrorKind.GRAMMAR
    assert _kind(lambda: b.check_grammar('other ::= "x"')) == ErrorKind.GRAMMAR
    assert b.grammar_match(grammar, "no") and not b.grammar_match(grammar, "nope")
    b.eval_prompt(b.tokenize(PROMPT, True, False))
    b.sampler_init(GenerationParams(temperature=0.0, grammar=grammar), 1)
    tokens, end = b.next_tokens(8, True)
    assert b.detokenize(tokens) in (b"yes", b"no") and end == StepEnd.EOG
    b.reset()
    b.eval_prompt(b.tokenize(PROMPT, True, False))
    logits = b.logits()
    b.sampler_init(_greedy(), 1)  # a new sampler has no grammar: the plain argmax again
    tokens, _ = b.next_tokens(1, True)
    assert tokens == [max(range(len(logits)), key=logits.__getitem__)] or not tokens
    if caps.json_schema:
        g = b.json_schema_to_grammar('{"type": "boolean"}')
        assert "root ::=" in g and b.grammar_match(g, "true") and not b.grammar_match(g, "1")
        assert _kind(lambda: b.json_schema_to_grammar("{")) == ErrorKind.GRAMMAR


def test_adapters(loaded: tuple[Backend, ModelInfo], fx: dict[str, str]) -> None:
    b, _ = loaded
    if not b.capabilities.lora:
        pytest.skip(f"no LoRA on the {b.name} backend (the Engine never calls these then)")
    prompt = b.tokenize(PROMPT, True, False)
    b.eval_prompt(prompt)
    base = b.logits().tobytes()
    assert _kind(lambda: b.load_adapter(fx["lora_a"] + ".missing")) == ErrorKind.LOAD
    handle = b.load_adapter(fx["lora_a"])
    meta = b.adapter_metadata(handle)
    assert meta["adapter.type"] == "lora" and all(isinstance(v, str) for v in meta.values())
    b.apply_adapters([(handle, 1.0)])
    assert _kind(b.logits) == ErrorKind.STATE  # applying clears the KV cache
    assert b.eval_prompt(prompt) == 0  # so nothing evaluated under the old set is reused
    assert b.logits().tobytes() != base
    b.apply_adapters([(handle, 0.0)])  # scale 0: the base model
    assert b.eval_prompt(prompt) == 0
    assert b.logits().tobytes() == base
    b.apply_adapters([])
    assert b.eval_prompt(prompt) == 0
    assert b.logits().tobytes() == base
    b.free_adapter(handle)



def _norm(v: array.array) -> float:
    return math.sqrt(sum(x * x for x in v))


def test_embeddings(loaded: tuple[Backend, ModelInfo], fx: dict[str, str]) -> None:
    b, info = loaded
    assert b.capabilities.embeddings  # every backend here computes them
    texts = [b.tokenize(t, True, False) for t in (PROMPT, "hello world", "a")]
    window = b.embedding_window()
    assert 0 < window <= info.n_ctx
    assert b.embedding_pooling(None) == "mean"  # the fixture names no pooling type
    assert [b.embedding_pooling(p) for p in ("mean", "cls", "last")] == ["mean", "cls", "last"]
    vecs = b.embed(texts, None, True)
    assert len(vecs) == 3
    for v in vecs:
        assert isinstance(v, array.array) and v.typecode == "f" and len(v) == len(vecs[0]) > 0
        assert abs(_norm(v) - 1.0) < 1e-5
    assert vecs[0].tobytes() != vecs[1].tobytes()
    assert [v.tobytes() for v in b.embed(texts, "mean", True)] == [v.tobytes() for v in vecs]
    raw = b.embed(texts[:1], "mean", False)[0]
    assert abs(_norm(raw) - 1.0) > 1e-3  # not normalised
    assert all(abs(x / _norm(raw) - y) < 1e-5 for x, y in zip(raw, vecs[0], strict=True))
    assert b.embed(texts[:1], "cls", True)[0].tobytes() != vecs[0].tobytes()
    assert b.embed(texts[:1], "last", True)[0].tobytes() != vecs[0].tobytes()
    # refused before any work: too long, empty, outside the vocabulary; the backend still works
    assert _kind(lambda: b.embed([[texts[0][-1]] * (window + 1)], None, True)) == ErrorKind.CONTEXT
    assert _kind(lambda: b.embed([[]], None, True)) == ErrorKind.ARG
    assert _kind(lambda: b.embed([[info.n_vocab + 1]], None, True)) == ErrorKind.ARG
    assert _kind(lambda: b.embedding_pooling("max")) == ErrorKind.ARG  # type: ignore[arg-type]
    alone = b.embed(texts[1:2], None, True)[0]  # packed with others or not: float noise apart
    assert max(abs(x - y) for x, y in zip(alone, vecs[1], strict=True)) < 1e-5


def test_embeddings_leave_the_generation_state_alone(loaded: tuple[Backend, ModelInfo]) -> None:
    b, _ = loaded
    b.eval_prompt(b.tokenize(PROMPT, True, False))
    before = b.logits().tobytes()
    b.embed([b.tokenize("hello world", True, False)], None, True)
    assert b.logits().tobytes() == before  # still there, unchanged
