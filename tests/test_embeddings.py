"""Engine.embed on llama.cpp, natively and in Pyodide (WebAssembly), plus the FakeBackend's.

Checked against independent references: a numpy forward pass of a tiny F32 llama
(tests.support.hf_llama, native only) for every pooling type; and, on every platform,
tests/data/embedding_golden.json (``python -m tools.make_embed_golden``, made natively): the
native build must still compute it, the WebAssembly one must agree within the tolerances below.
No numpy outside the reference test: this file runs in Pyodide.
"""

from __future__ import annotations

import array
import hashlib
import json
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from llamart import ContextOverflowError, Engine
from llamart.testing import FakeBackend

IN_PYODIDE = sys.platform == "emscripten"
GOLDEN = json.loads((Path(__file__).parent / "data" / "embedding_golden.json")
                    .read_text(encoding="utf-8"))
N_CTX = 256
PROMPT = "Once upon a time"
# Native vs WebAssembly (measured in Node): the F32 fixture agrees to 8.5e-8 per coordinate of a
# unit vector (the same kernels up to summation order): tolerance 1e-5. SmolLM2 Q4_1: min
# cosine 0.9966 (max 2.3e-2 per coordinate): the Q4 dot-product kernels (AVX2 vs SIMD128) round
# differently and activations are re-quantized to Q8 in every layer, as for its logits (see
# tests/test_real_models.py): tolerance cosine >= 0.99, and each text's vector nearest its own
# native one. Native vs its own golden: the same build, the same numbers (to the 8 digits kept).
WASM_TOL = {"model_f32": 1e-5}
WASM_MIN_COS = 0.99
NATIVE_TOL = 1e-6
# SmolLM2 Q4_1 natively: ggml picks its CPU kernels per machine (runtime dispatch), and the
# Q4 dot products of two variants round differently (measured: golden from one AVX-512 host,
# another gives max diff 1.4e-3 on unit vectors, cosine 0.999988; the AMX variant of an Intel
# Sapphire Rapids host, whose int8 tiles quantise activations their own way, 6.4e-3 and
# cosine 0.99974)
NATIVE_Q4_TOL, NATIVE_Q4_MIN_COS = 1e-2, 0.9995
# two texts saying the same, one about something else (SmolLM2's mean-pooled cosines:
# 0.957 vs 0.672)
PARAPHRASE = ("The cat sat on the mat.", "A cat was sitting on the mat.",
              "Stock markets fell sharply after the interest rate decision.")


def cos(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


def max_diff(a: Sequence[float], b: Sequence[float]) -> float:
    return max(abs(x - y) for x, y in zip(a, b, strict=True))


def norm(v: Sequence[float]) -> float:
    return math.sqrt(sum(x * x for x in v))


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@pytest.fixture
def tiny(engine: Engine, fx: dict[str, str]) -> Engine:
    engine.load_model(fx["model_f32"], n_ctx=N_CTX, n_threads=1)
    return engine


@pytest.fixture(scope="module")
def smol(real_model: Callable[[str], str]) -> Engine:
    eng = Engine()
    eng.load_model(real_model("smollm2"), n_ctx=N_CTX, n_threads=1)
    yield eng
    eng.dispose()


# ---- the API ----

def test_capability_and_shape(tiny: Engine) -> None:
    assert tiny.capabilities.embeddings
    vecs = tiny.embed(["hello world", "abc"])
    assert len(vecs) == 2
    for v in vecs:
        assert isinstance(v, array.array) and v.typecode == "f"
        assert len(v) == tiny.model_info.n_embd == 64
        assert all(math.isfinite(x) for x in v)
    one = tiny.embed("hello world")  # a str is one text: still a list
    assert len(one) == 1 and max_diff(one[0], vecs[0]) < 1e-5
    assert tiny.embed([]) == []


def test_same_text_same_vector(tiny: Engine) -> None:
    first = tiny.embed(["hello world", "abc"])
    again = tiny.embed(["hello world", "abc"])
    assert [v.tobytes() for v in first] == [v.tobytes() for v in again]
    assert first[0].tobytes() != first[1].tobytes()
    twice = tiny.embed(["hello world", "hello world"])  # two sequences of one decode: other
    assert max_diff(twice[0], twice[1]) < 1e-6  # cache cells, other summation order


def test_normalize(tiny: Engine) -> None:
    unit = tiny.embed("hello world")[0]
    raw = tiny.embed("hello world", normalize=False)[0]
    assert abs(norm(unit) - 1.0) < 1e-6
    assert abs(norm(raw) - 1.0) > 1e-2  # the raw mean of hidden states is not unit length
    assert max_diff([x / norm(raw) for x in raw], unit) < 1e-6


def test_poolings_differ_and_default_to_mean(tiny: Engine) -> None:
    texts = ["hello world", "the quick brown fox"]
    by = {p: tiny.embed(texts, pooling=p) for p in ("mean", "cls", "last")}
    for a, b in (("mean", "cls"), ("mean", "last"), ("cls", "last")):
        assert all(cos(x, y) < 0.999 for x, y in zip(by[a], by[b], strict=True)), (a, b)
    # the fixture's GGUF names no pooling type: mean
    assert tiny.embedding_pooling() == "mean"
    assert [v.tobytes() for v in tiny.embed(texts)] == [v.tobytes() for v in by["mean"]]
    # cls is the first token's state: BOS for this model, the same whatever follows (causal)
    assert by["cls"][0].tobytes() == by["cls"][1].tobytes()
    # switching back and forth (a context per pooling type, remade) gives the same again
    assert tiny.embed(texts, pooling="last")[1].tobytes() == by["last"][1].tobytes()


def test_the_models_own_pooling_type(engine: Engine, fx: dict[str, str]) -> None:
    engine.load_model(fx["model_pooling_last"], n_ctx=N_CTX, n_threads=1)  # llama.pooling_type 3
    assert engine.embedding_pooling() == "last"
    texts = ["hello world", "abc"]
    own = engine.embed(texts)
    assert [v.tobytes() for v in own] == [v.tobytes() for v in engine.embed(texts, pooling="last")]
    assert cos(own[0], engine.embed(texts, pooling="mean")[0]) < 0.999


def test_bad_arguments(tiny: Engine) -> None:
    with pytest.raises(ValueError, match="pooling"):
        tiny.embed("x", pooling="max")
    with pytest.raises(TypeError, match="texts"):
        tiny.embed(5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"texts\[1\]"):
        tiny.embed(["a", b"b"])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="normalize"):
        tiny.embed("x", normalize="yes")  # type: ignore[arg-type]
    assert len(tiny.embed("x")) == 1  # still usable


def test_batching_matches_one_at_a_time(engine: Engine, fx: dict[str, str]) -> None:
    # n_batch 64: a window of 64 tokens, so 40 texts take several decodes (and more than the
    # 32 sequences one decode holds)
    engine.load_model(fx["model_f32"], n_ctx=N_CTX, n_batch=64, n_threads=1)
    texts = [f"text {i}: " + "ab " * (i % 9) for i in range(40)]
    together = engine.embed(texts)
    alone = [engine.embed(t)[0] for t in texts]
    worst = max(max_diff(a, b) for a, b in zip(together, alone, strict=True))
    assert worst < 1e-5, f"batched vs single: {worst:.3g}"
    assert len({v.tobytes() for v in alone}) == len(texts)


def test_too_long_is_refused_and_the_engine_works(engine: Engine, fx: dict[str, str]) -> None:
    engine.load_model(fx["model_f32"], n_ctx=N_CTX, n_batch=32, n_threads=1)
    long_text = "ab " * 40
    assert len(engine.tokenize(long_text)) > 32
    before = engine.embed("hello")[0]
    with pytest.raises(ContextOverflowError, match="embedding window is 32"):
        engine.embed(["hello", long_text])
    assert engine.embed("hello")[0].tobytes() == before.tobytes()
    assert engine.complete("hello", max_tokens=3, temperature=0.0) is not None
    # below the Python check, the C core refuses too (no llama.cpp abort)
    from llamart.bindings.base import BackendError, ErrorKind

    backend = engine._backend  # noqa: SLF001 - the backend's own refusal
    with pytest.raises(BackendError) as info:
        backend.embed([[5] * 33], None, True)
    assert info.value.kind == ErrorKind.CONTEXT and "window is 32" in info.value.reason
    assert engine.embed("hello")[0].tobytes() == before.tobytes()


def test_generation_is_not_disturbed(tiny: Engine) -> None:
    greedy = {"temperature": 0.0, "repeat_penalty": 1.0}
    plain = tiny.complete(PROMPT, max_tokens=16, **greedy)
    tiny.embed(["hello world", PROMPT])
    assert tiny.complete(PROMPT, max_tokens=16, **greedy) == plain
    # in the middle of a streaming generation: its KV cache is not the embedding context's
    gen = tiny.generate(PROMPT, max_tokens=16, **greedy)
    chunks = [next(gen), next(gen)]
    vec = tiny.embed(PROMPT, pooling="last")[0]
    chunks += list(gen)
    assert "".join(chunks) == plain
    assert tiny.embed(PROMPT, pooling="last")[0].tobytes() == vec.tobytes()


def test_lora_applies_to_embeddings(tiny: Engine, fx: dict[str, str]) -> None:
    if not tiny.capabilities.lora:
        pytest.skip(f"capabilities.lora is False: {tiny.capabilities.lora_reason}")
    texts = ["hello world", PROMPT]
    base = tiny.embed(texts)  # the embedding context exists before the adapter is set
    tiny.set_lora(fx["lora_a"], 1.0)
    with_a = tiny.embed(texts)
    assert all(cos(x, y) < 0.9999 for x, y in zip(base, with_a, strict=True))
    last_a = tiny.embed(texts, pooling="last")  # a context made while the adapter is set
    tiny.set_lora(fx["lora_a"], 0.0)  # scale 0: the base model
    assert [v.tobytes() for v in tiny.embed(texts)] == [v.tobytes() for v in base]
    tiny.set_lora(fx["lora_a"], 1.0)
    assert [v.tobytes() for v in tiny.embed(texts)] == [v.tobytes() for v in with_a]
    tiny.clear_loras()
    assert [v.tobytes() for v in tiny.embed(texts)] == [v.tobytes() for v in base]
    assert all(cos(x, y) < 0.9999 for x, y in
               zip(tiny.embed(texts, pooling="last"), last_a, strict=True))


def test_lora_set_before_the_first_embedding(tiny: Engine, fx: dict[str, str]) -> None:
    if not tiny.capabilities.lora:
        pytest.skip(f"capabilities.lora is False: {tiny.capabilities.lora_reason}")
    tiny.set_lora(fx["lora_a"], 1.0)
    late = tiny.embed(["hello world"])[0]  # context created with the adapter already set
    other = Engine()
    try:
        other.load_model(fx["model_f32"], n_ctx=N_CTX, n_threads=1)
        base = other.embed(["hello world"])[0]
        other.set_lora(fx["lora_a"], 1.0)  # set on an existing embedding context
        assert other.embed(["hello world"])[0].tobytes() == late.tobytes()
        assert cos(base, late) < 0.9999
        other.unload_model()  # frees adapters, both contexts and the model, in that order
    finally:
        other.dispose()


# ---- independent references ----

@pytest.mark.skipif(IN_PYODIDE, reason="the numpy reference forward pass runs natively only")
def test_poolings_match_a_numpy_forward_pass(engine: Engine,
                                             tmp_path_factory: pytest.TempPathFactory) -> None:
    np = pytest.importorskip("numpy")
    from tests.support import hf_llama

    m = hf_llama.make_hf_llama(seed=5)
    path = hf_llama.write_gguf(m, tmp_path_factory.mktemp("ref") / "ref.gguf")
    engine.load_model(path, n_ctx=N_CTX, n_threads=1)
    texts = ["hello world", "the quick brown fox jumps", "a"]
    for pooling, pick in (("mean", lambda h: h.mean(0)), ("cls", lambda h: h[0]),
                          ("last", lambda h: h[-1])):
        got = engine.embed(texts, pooling=pooling, normalize=False)
        for text, vec in zip(texts, got, strict=True):
            want = pick(hf_llama.hidden_states(m, engine.tokenize(text)))
            err = float(np.abs(np.asarray(vec) - want).max() / np.abs(want).max())
            assert err < 1e-5, f"{pooling} {text!r}: relative error {err:.3g}"


def _golden_check(eng: Engine, name: str, path: str,
                  poolings: Sequence[str]) -> tuple[float, float]:
    """(max |ours - golden| over every coordinate, min cosine(ours, golden))."""
    record = GOLDEN["models"][name]
    assert sha256(path) == record["sha256"], (
        f"{name} is not the file tests/data/embedding_golden.json was made from: "
        "run `python -m tools.make_embed_golden`")
    worst, least = 0.0, 1.0
    for pooling in poolings:
        got = eng.embed(GOLDEN["texts"], pooling=pooling)
        for vec, want in zip(got, record["vectors"][pooling], strict=True):
            worst, least = max(worst, max_diff(vec, want)), min(least, cos(vec, want))
    return worst, least


def test_fixture_matches_the_golden(engine: Engine, fx: dict[str, str],
                                    record_property: Callable[[str, object], None]) -> None:
    engine.load_model(fx["model_f32"], n_ctx=GOLDEN["n_ctx"], n_threads=1)
    worst, least = _golden_check(engine, "model_f32", fx["model_f32"], ("mean", "cls", "last"))
    record_property("max_diff", worst)
    record_property("min_cos", least)
    tol = WASM_TOL["model_f32"] if IN_PYODIDE else NATIVE_TOL
    assert worst <= tol, f"max |ours - native golden| {worst:.3g} > {tol}"


# ---- the real model ----

def test_smollm2_paraphrase_is_closer(smol: Engine) -> None:
    assert smol.embedding_pooling() == "mean"  # SmolLM2's GGUF names no pooling type
    a, b, c = smol.embed(list(PARAPHRASE))
    assert cos(a, b) > cos(a, c) + 0.1, (cos(a, b), cos(a, c))
    assert smol.embed(PARAPHRASE[0])[0].tobytes() == smol.embed(PARAPHRASE[0])[0].tobytes()


def test_smollm2_matches_the_golden(smol: Engine, real_model: Callable[[str], str],
                                    record_property: Callable[[str, object], None]) -> None:
    assert GOLDEN["n_ctx"] == N_CTX
    worst, least = _golden_check(smol, "smollm2", real_model("smollm2"), ("mean",))
    record_property("max_diff", worst)
    record_property("min_cos", least)
    if IN_PYODIDE:
        assert least >= WASM_MIN_COS, f"min cosine(ours, native golden) {least:.6f}"
        ours = smol.embed(GOLDEN["texts"])
        golden = GOLDEN["models"]["smollm2"]["vectors"]["mean"]
        for i, vec in enumerate(ours):
            nearest = max(range(len(golden)), key=lambda j: cos(vec, golden[j]))
            assert nearest == i, f"text {i} is nearest native's vector of text {nearest}"
    else:
        assert worst <= NATIVE_Q4_TOL, f"max |ours - native golden| {worst:.3g}"
        assert least >= NATIVE_Q4_MIN_COS, f"min cosine(ours, native golden) {least:.6f}"


def test_smollm2_empty_text_is_refused(smol: Engine) -> None:
    assert smol.tokenize("") == []  # SmolLM2 adds no BOS
    with pytest.raises(ValueError, match=r"texts\[1\] has no tokens"):
        smol.embed(["hi", ""])
    assert len(smol.embed("hi")) == 1


# ---- the FakeBackend ----

def test_fake_backend_embeddings(fx: dict[str, str]) -> None:
    with Engine(FakeBackend()) as eng:
        eng.load_model(fx["model_f32"], n_ctx=64, n_batch=16)
        assert eng.capabilities.embeddings and eng.embedding_pooling() == "mean"
        ab, ba = eng.embed(["ab", "ba"])
        assert max_diff(ab, ba) < 1e-6  # mean of a bag of tokens: order does not count
        assert eng.embed("ab", pooling="last")[0] != eng.embed("ba", pooling="last")[0]
        assert abs(norm(ab) - 1.0) < 1e-6
        with pytest.raises(ContextOverflowError):
            eng.embed("x" * 20)


def test_smollm2_whole_window(smol: Engine) -> None:
    # the window is min(n_ctx 256, n_batch 512): a text filling it is one ubatch, one more
    # token is refused before llama.cpp sees it
    window = N_CTX
    words = " ".join(["cat"] * 400)
    tokens = smol.tokenize(words)
    fits = smol.detokenize(tokens[:window])
    assert len(smol.tokenize(fits)) == window
    (vec,) = smol.embed(fits)
    assert abs(norm(vec) - 1.0) < 1e-5 and all(math.isfinite(x) for x in vec)
    with pytest.raises(ContextOverflowError, match=f"embedding window is {window}"):
        smol.embed(smol.detokenize(tokens[:window + 1]))
    assert len(smol.embed("still works")) == 1
