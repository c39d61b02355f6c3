"""The Engine against real llama.cpp through the platform's default backend.

Runs unchanged natively (cffi) and inside Pyodide (Node, Chromium): no numpy or gguf here, the
model files come from the ``fx`` fixture (prebuilt and handed in for the Pyodide runs). The
Engine's own logic is covered against a fake backend in tests/test_engine_*.py; these tests
check that real llama.cpp behaves as the Engine promises.
"""

from __future__ import annotations

import math
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from llamart import (
    ContextOverflowError,
    Engine,
    EngineStateError,
    GenerationParams,
    LlamartError,
    ModelLoadError,
    ModelParams,
)
from tests.support.platform_support import run_coroutine, threads_available

PROMPT = "Once upon a time"
N_CTX = 256  # llama.cpp pads n_ctx up to a multiple of 256: the smallest real window
GREEDY = {"temperature": 0.0, "max_tokens": 24}
# every bad_* file the fixture builder writes; test_every_bad_fixture_is_covered keeps it honest
BAD_FILES = (
    "bad_arch", "bad_empty", "bad_garbage", "bad_lying_array", "bad_lying_dims",
    "bad_lying_n_kv", "bad_lying_n_tensors", "bad_lying_string", "bad_missing_half",
    "bad_model_as_adapter", "bad_shape", "bad_truncated", "bad_unknown_tensor",
)






@pytest.fixture
def loaded(engine: Engine, fx: dict[str, str]) -> Engine:
    engine.load_model(fx["model_f32"], n_ctx=N_CTX, n_threads=1)
    return engine


def _greedy(e: Engine, prompt: Any = PROMPT, **kw: Any) -> str:
    return e.complete(prompt, **{**GREEDY, **kw})


# ---- loading and model facts ----

def test_load_reports_model_info(engine: Engine, fx: dict[str, str]) -> None:
    info = engine.load_model(fx["model_f32"], n_ctx=N_CTX, n_batch=64)
    assert engine.model_info == info
    assert info.path == fx["model_f32"]
    assert info.n_ctx == N_CTX and info.n_batch == 64
    meta = engine.metadata
    assert meta["general.architecture"] == "llama"
    assert info.n_ctx_train == int(meta["llama.context_length"])
    assert info.n_embd == int(meta["llama.embedding_length"]) == 64
    assert info.n_layer == int(meta["llama.block_count"]) == 2
    assert "llama" in info.description
    assert info.n_params > 0 and info.size > 0
    assert info.bos == engine.tokenize("x")[0]
    assert info.eos != info.bos
    assert len(engine.logits(PROMPT)) == info.n_vocab > 256  # byte tokens + word pieces


def test_load_accepts_model_params(engine: Engine, fx: dict[str, str]) -> None:
    info = engine.load_model(fx["model_f32"], ModelParams(n_ctx=N_CTX, n_batch=32, n_threads=1))
    assert (info.n_ctx, info.n_batch) == (N_CTX, 32)
    # a prompt longer than n_batch is split into several decodes
    assert len(engine.tokenize("the " * 60)) > 32
    assert len(engine.logits("the " * 60)) == info.n_vocab


@pytest.mark.parametrize("name", ["model_f16", "model_q8_0", "model_n32"])
def test_other_models_load_and_generate(engine: Engine, fx: dict[str, str], name: str) -> None:
    info = engine.load_model(fx[name], n_ctx=N_CTX, n_threads=1)
    logits = engine.logits(PROMPT)
    assert len(logits) == info.n_vocab and all(math.isfinite(x) for x in logits)
    assert _greedy(engine) == _greedy(engine) != ""


def test_loading_another_model_replaces_the_first(loaded: Engine, fx: dict[str, str]) -> None:
    base = loaded.logits(PROMPT)
    info = loaded.load_model(fx["model_n32"], n_ctx=N_CTX, n_threads=1)
    assert loaded.model_info == info and info.n_embd == 32
    assert loaded.logits(PROMPT) != base


# ---- text ----

@pytest.mark.parametrize("text", ["héllo wörld 😀", "Hello world", "a\nb  c", "日本語 ✓ ÿ"])
def test_tokenize_round_trip(loaded: Engine, text: str) -> None:
    tokens = loaded.tokenize(text, add_special=False)
    assert tokens and all(0 <= t < loaded.model_info.n_vocab for t in tokens)
    assert loaded.detokenize(tokens) == text
    with_bos = loaded.tokenize(text)
    assert with_bos[0] == loaded.model_info.bos and with_bos[1:] == tokens


def test_multibyte_text_uses_byte_tokens(loaded: Engine) -> None:
    # "😀" is not a word piece: SentencePiece falls back to its 4 UTF-8 byte tokens, each an
    # invalid string alone; only the whole sequence decodes
    emoji = loaded.tokenize("😀", add_special=False)
    assert len(emoji) >= 4
    assert loaded.detokenize(emoji) == "😀"
    assert "\ufffd" in loaded.detokenize(emoji[-1:])  # a lone continuation byte


def test_special_tokens_parsed_only_when_asked(loaded: Engine) -> None:
    text = "<|im_start|>user"
    plain = loaded.tokenize(text, add_special=False)
    special = loaded.tokenize(text, add_special=False, parse_special=True)
    assert len(special) < len(plain)
    assert loaded.detokenize(plain) == text


# ---- generation ----

def test_greedy_is_deterministic_and_generate_equals_complete(loaded: Engine) -> None:
    text = _greedy(loaded)
    assert text and loaded.last_finish_reason == "length"
    assert loaded.last_usage["completion_tokens"] == GREEDY["max_tokens"]
    assert _greedy(loaded) == text
    assert "".join(loaded.generate(PROMPT, **GREEDY)) == text


def test_streaming_yields_several_chunks(loaded: Engine) -> None:
    it = loaded.generate(PROMPT, **GREEDY)
    assert isinstance(it, Iterator)
    chunks = list(it)
    assert len(chunks) >= 5 and all(isinstance(c, str) and c for c in chunks)
    assert "".join(chunks) == _greedy(loaded)


def test_prompt_as_tokens_equals_prompt_as_text(loaded: Engine) -> None:
    assert _greedy(loaded, loaded.tokenize(PROMPT)) == _greedy(loaded)


def test_generation_params_object(loaded: Engine) -> None:
    gp = GenerationParams(max_tokens=GREEDY["max_tokens"], temperature=0.0)
    assert loaded.complete(PROMPT, gp) == loaded.complete(PROMPT, params=gp) == _greedy(loaded)


def test_same_seed_same_text(loaded: Engine) -> None:
    a = loaded.complete(PROMPT, max_tokens=24, temperature=0.8, seed=1)
    assert loaded.last_usage["seed"] == 1
    assert a == loaded.complete(PROMPT, max_tokens=24, temperature=0.8, seed=1)
    assert a == "".join(loaded.generate(PROMPT, max_tokens=24, temperature=0.8, seed=1))


def test_different_seeds_differ(loaded: Engine) -> None:
    texts = {loaded.complete(PROMPT, max_tokens=24, temperature=0.8, seed=s) for s in (1, 2, 3)}
    assert len(texts) == 3
    assert _greedy(loaded) not in texts  # sampling is not greedy


def test_unseeded_runs_record_their_seed(loaded: Engine) -> None:
    text = loaded.complete(PROMPT, max_tokens=16, temperature=0.8)
    seed = loaded.last_usage["seed"]
    assert loaded.complete(PROMPT, max_tokens=16, temperature=0.8, seed=seed) == text


def test_max_tokens(loaded: Engine) -> None:
    long = _greedy(loaded, max_tokens=24)
    short = _greedy(loaded, max_tokens=6)
    assert loaded.last_usage["completion_tokens"] == 6
    assert loaded.last_finish_reason == "length"
    assert long.startswith(short) and len(short) < len(long)
    assert _greedy(loaded, max_tokens=0) == ""
    assert loaded.last_usage["completion_tokens"] == 0


def test_stop_string_inside_one_chunk_and_across_chunks(loaded: Engine) -> None:
    chunks = list(loaded.generate(PROMPT, **GREEDY))
    full = "".join(chunks)
    inside = next(c.strip() for c in chunks[2:] if len(c.strip()) >= 3 and c.strip().isalpha())
    cuts = [full.find(inside)]
    # a stop string made of the end of one chunk and the start of the next
    at = next(i for i in range(1, len(chunks) - 1)
              if chunks[i][-1:].isalpha() and chunks[i + 1][:2].strip().isalpha())
    across = chunks[at][-1:] + chunks[at + 1][:2]
    cuts.append(full.find(across))
    for stop, cut in zip((inside, across), cuts, strict=True):
        out = _greedy(loaded, stop=[stop])
        assert out == full[:cut]
        assert loaded.last_finish_reason == "stop"
        assert stop not in out
    # the earliest of several stop strings wins
    assert _greedy(loaded, stop=[inside, across]) == full[:min(cuts)]
    assert _greedy(loaded, stop=["no such text in the output"]) == full


def test_finish_reason_context(engine: Engine, fx: dict[str, str]) -> None:
    info = engine.load_model(fx["model_tiny_ctx"], n_ctx=64, n_threads=1)
    assert info.n_ctx_train == 64 and info.n_ctx >= 64
    text = engine.complete(PROMPT, max_tokens=info.n_ctx + 50, temperature=0.0)
    assert engine.last_finish_reason == "context" and text
    usage = engine.last_usage
    # the window is full: every position used, plus the last token (sampled, not evaluated)
    assert usage["prompt_tokens"] + usage["completion_tokens"] == info.n_ctx + 1
    assert _greedy(engine) == text[:len(_greedy(engine))]  # the next generation starts clean


def test_prompt_too_long_raises_before_any_work(loaded: Engine) -> None:
    before = _greedy(loaded)
    usage = loaded.last_usage
    n_ctx = loaded.model_info.n_ctx
    long_prompt = "the " * (n_ctx + 20)
    assert len(loaded.tokenize(long_prompt)) > n_ctx
    with pytest.raises(ContextOverflowError, match=f"n_ctx={n_ctx}"):
        loaded.generate(long_prompt, max_tokens=4)
    with pytest.raises(ContextOverflowError):
        loaded.complete(long_prompt)
    with pytest.raises(ContextOverflowError):
        loaded.logits(long_prompt)
    assert loaded.last_usage == usage  # no generation started
    # exactly n_ctx tokens fit for logits, but leave no room to generate
    exact = loaded.tokenize(long_prompt)[:n_ctx]
    assert len(loaded.logits(exact)) == loaded.model_info.n_vocab
    with pytest.raises(ContextOverflowError, match="room"):
        loaded.complete(exact, max_tokens=1)
    assert _greedy(loaded) == before


def test_chat_uses_the_models_template(loaded: Engine) -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    reply = loaded.chat(messages, max_tokens=16, temperature=0.0)
    assert reply and loaded.last_finish_reason in ("length", "stop")
    # the fixture's template is ChatML; its markers are parsed as special tokens
    chatml = ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n"
              "<|im_start|>assistant\n")
    tokens = loaded.tokenize(chatml, parse_special=True)
    assert loaded.complete(tokens, max_tokens=16, temperature=0.0) == reply
    assert loaded.chat([{"role": "user", "content": "hi"}], max_tokens=16,
                       temperature=0.0) != reply


def test_chat_without_template_raises(engine: Engine, fx: dict[str, str]) -> None:
    engine.load_model(fx["model_no_template"], n_ctx=N_CTX, n_threads=1)
    with pytest.raises(LlamartError, match="template"):
        engine.chat([{"role": "user", "content": "hi"}], max_tokens=4)
    assert _greedy(engine)  # still usable


def test_agenerate_matches_generate(loaded: Engine) -> None:
    async def main() -> list[str]:
        return [c async for c in loaded.agenerate(PROMPT, **GREEDY)]

    chunks = run_coroutine(main())
    assert len(chunks) >= 5 and "".join(chunks) == _greedy(loaded)
    assert run_coroutine(loaded.acomplete(PROMPT, **GREEDY)) == _greedy(loaded)


# ---- generations abandoned part-way ----

def test_closed_generation_leaves_engine_usable(loaded: Engine) -> None:
    full = _greedy(loaded)
    it = loaded.generate(PROMPT, **GREEDY)
    head = next(it) + next(it)
    it.close()
    assert loaded.last_finish_reason == "cancelled"
    assert full.startswith(head)
    assert _greedy(loaded) == full
    with pytest.raises(StopIteration):
        next(it)


def test_generation_abandoned_by_break_and_dropped(loaded: Engine) -> None:
    full = _greedy(loaded)
    for n, _chunk in enumerate(loaded.generate(PROMPT, **GREEDY)):
        if n == 2:
            break  # CPython closes the generator when the loop drops its last reference
    assert loaded.last_finish_reason == "cancelled"
    it = loaded.generate(PROMPT, **GREEDY)
    next(it)
    with pytest.raises(EngineStateError):
        loaded.complete(PROMPT)  # one generation at a time
    del it
    assert _greedy(loaded) == full


def test_async_generation_closed_early(loaded: Engine) -> None:
    full = _greedy(loaded)

    async def main() -> str:
        it = loaded.agenerate(PROMPT, **GREEDY)
        first = await it.__anext__()
        await it.aclose()
        return first

    assert full.startswith(run_coroutine(main()))
    assert loaded.last_finish_reason == "cancelled"
    assert _greedy(loaded) == full


@pytest.mark.skipif(not threads_available(),
                    reason="Pyodide cannot start Python threads (no pthreads in its build)")
def test_other_threads_during_a_real_generation(loaded: Engine) -> None:
    full = _greedy(loaded)
    it = loaded.generate(PROMPT, **GREEDY)
    out = [next(it)]
    seen: dict[str, Any] = {}

    def other() -> None:
        seen["tokens"] = loaded.tokenize(PROMPT)  # a reading call waits for the token
        try:
            loaded.logits(PROMPT)
        except EngineStateError as e:
            seen["refused"] = str(e)

    t = threading.Thread(target=other)
    t.start()
    out.extend(it)
    t.join(timeout=60)
    assert "".join(out) == full
    assert seen["tokens"] == loaded.tokenize(PROMPT) and "streaming" in seen["refused"]


# ---- logits ----

def test_logits_are_deterministic(loaded: Engine) -> None:
    a = loaded.logits(PROMPT)
    assert len(a) == loaded.model_info.n_vocab
    assert all(math.isfinite(x) for x in a)
    assert loaded.logits(PROMPT).tobytes() == a.tobytes()  # bit-identical: nothing re-run
    _greedy(loaded)  # a generation in between must not leak state into the next call
    b = loaded.logits(PROMPT)  # the prefix is reused, its last token evaluated again
    scale = max(abs(x) for x in a)
    assert max(abs(x - y) for x, y in zip(a, b, strict=True)) <= 1e-4 * scale  # float noise
    assert loaded.logits(loaded.tokenize(PROMPT)).tobytes() == b.tobytes()
    assert loaded.logits(PROMPT + " the").tobytes() != a.tobytes()


def test_logits_buffer_without_numpy(loaded: Engine) -> None:
    logits = loaded.logits(PROMPT)
    view = memoryview(logits)
    assert view.format == "f" and view.itemsize == 4 and view.ndim == 1
    assert view.nbytes == 4 * loaded.model_info.n_vocab
    raw = view.cast("B")
    for i in (0, 1, len(logits) // 2, len(logits) - 1):
        assert struct.unpack_from("=f", raw, 4 * i)[0] == logits[i] == view[i]
    logits[0] = 123.0  # a copy: writing to it changes nothing in the engine
    assert loaded.logits(PROMPT)[0] != 123.0


def test_greedy_picks_the_argmax_of_the_logits(loaded: Engine) -> None:
    logits = loaded.logits(PROMPT)
    best = max(range(len(logits)), key=logits.__getitem__)
    first = loaded.complete(PROMPT, max_tokens=1, temperature=0.0, repeat_penalty=1.0)
    assert first.strip() == loaded.detokenize([best]).strip() != ""


def test_greedy_steps_follow_the_logits_token_by_token(loaded: Engine) -> None:
    prompt = loaded.tokenize(PROMPT)
    generated: list[int] = []
    for _ in range(6):  # the reference: one logits() call per token, argmax in Python
        logits = loaded.logits(prompt + generated)
        generated.append(max(range(len(logits)), key=logits.__getitem__))
    chunks = list(loaded.generate(prompt, max_tokens=6, temperature=0.0, repeat_penalty=1.0))
    # (detokenize drops the space a leading piece carries, as for any text it returns)
    assert "".join(chunks).lstrip(" ") == loaded.detokenize(generated)
    assert len(chunks) <= 6 and loaded.last_usage["completion_tokens"] == 6


def test_cancel_request_stops_a_step_before_its_next_token(loaded: Engine) -> None:
    from llamart.bindings.base import StepEnd

    backend = loaded._backend  # the protocol call cancel() makes from another thread
    backend.reset()
    backend.eval_prompt(loaded.tokenize(PROMPT))
    backend.sampler_init(GenerationParams(temperature=0.0, repeat_penalty=1.0), 0)
    backend.request_cancel()
    assert backend.next_tokens(8, True) == ([], StepEnd.CANCELLED)
    tokens, end = backend.next_tokens(8, True)  # the request was used up
    assert len(tokens) == 8 and end == StepEnd.FULL
    # the engine carries on (greedy: a sampled end-of-generation token would end it early)
    assert loaded.complete(PROMPT, max_tokens=3, temperature=0.0) != ""
    assert loaded.last_finish_reason == "length"


@pytest.mark.skipif(sys.platform == "emscripten", reason="native backend only")
def test_native_declarations_come_prebuilt() -> None:
    code = ("import sys; from llamart.bindings.ffi_cffi import library; library(); "
            "print('pycparser' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120)
    assert out.stdout.strip() == "False"  # the build's _llamart_cffi.py was used, no parsing


# ---- errors with real files ----

def test_missing_file(loaded: Engine, fx: dict[str, str]) -> None:
    expected = _greedy(loaded)
    missing = fx["model_f32"] + ".missing.gguf"
    with pytest.raises(FileNotFoundError, match="missing.gguf") as info:
        loaded.load_model(missing)
    assert info.value.filename == missing
    assert loaded.model_info.path == fx["model_f32"]
    assert _greedy(loaded) == expected


def test_every_bad_fixture_is_covered(fx: dict[str, str]) -> None:
    assert sorted(k for k in fx if k.startswith("bad_")) == sorted(BAD_FILES)


@pytest.mark.parametrize("name", BAD_FILES)
def test_bad_model_file(loaded: Engine, fx: dict[str, str], name: str) -> None:
    expected = _greedy(loaded)
    logits = loaded.logits(PROMPT)
    path = fx[name]
    with pytest.raises(ModelLoadError) as info:
        loaded.load_model(path, n_ctx=N_CTX, n_threads=1)
    err = info.value
    assert err.path == path and str(err).startswith(f"{path}: ")
    assert err.reason and err.reason in str(err)
    # the previous model is still loaded and behaves exactly as before
    assert loaded.model_info is not None and loaded.model_info.path == fx["model_f32"]
    assert _greedy(loaded) == expected
    assert loaded.logits(PROMPT).tobytes() == logits.tobytes()


def test_model_refused_by_llama_cpp_keeps_its_reason(loaded: Engine, fx: dict[str, str]) -> None:
    # valid GGUF that passes the Python checks; llama.cpp itself refuses it (no hyperparameters)
    path = fx["bad_model_as_adapter"]
    with pytest.raises(ModelLoadError, match="llama.context_length"):
        loaded.load_model(path)
    assert loaded.model_info.path == fx["model_f32"]


# ---- lifecycle ----

def test_unload_then_use(loaded: Engine, fx: dict[str, str]) -> None:
    expected = _greedy(loaded)
    loaded.unload_model()
    assert loaded.model_info is None and loaded.loras == {}
    for call in (lambda: loaded.complete(PROMPT), lambda: loaded.generate(PROMPT),
                 lambda: loaded.logits(PROMPT), lambda: loaded.tokenize(PROMPT),
                 lambda: loaded.metadata):
        with pytest.raises(EngineStateError, match="no model"):
            call()
    loaded.unload_model()  # no-op
    loaded.load_model(fx["model_f32"], n_ctx=N_CTX, n_threads=1)
    assert _greedy(loaded) == expected


def test_dispose_is_idempotent_and_final(fx: dict[str, str]) -> None:
    with Engine() as e:
        e.load_model(fx["model_f32"], n_ctx=N_CTX, n_threads=1)
        assert _greedy(e)
    assert e.disposed
    e.dispose()
    e.dispose()
    for call in (lambda: e.load_model(fx["model_f32"]), lambda: e.complete(PROMPT),
                 lambda: e.tokenize(PROMPT), lambda: e.logits(PROMPT),
                 lambda: e.set_lora(fx["lora_a"]), lambda: e.model_info):
        with pytest.raises(EngineStateError, match="disposed"):
            call()


def test_dispose_ends_a_suspended_generation(engine: Engine, fx: dict[str, str]) -> None:
    engine.load_model(fx["model_f32"], n_ctx=N_CTX, n_threads=1)
    it = engine.generate(PROMPT, **GREEDY)
    next(it)
    engine.dispose()
    with pytest.raises(EngineStateError):
        next(it)


def test_two_engines_are_independent(loaded: Engine, fx: dict[str, str]) -> None:
    expected = _greedy(loaded)
    with Engine() as other:
        other.load_model(fx["model_n32"], n_ctx=N_CTX, n_threads=1)
        a = loaded.generate(PROMPT, **GREEDY)
        b = other.generate(PROMPT, **GREEDY)
        interleaved = ["", ""]
        live = [a, b]
        while any(live):  # alternate chunks between the two contexts
            for k, it in enumerate(live):
                if it is not None:
                    chunk = next(it, None)
                    if chunk is None:
                        live[k] = None
                    else:
                        interleaved[k] += chunk
        assert interleaved[1] == _greedy(other)
    assert interleaved[0] == expected == _greedy(loaded)
