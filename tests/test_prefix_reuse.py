"""Prompt prefix reuse: consecutive calls on one Engine evaluate only what follows the prefix
the KV cache already holds, and only when that prefix was computed under the active adapter set.

The reference is a fresh Engine on the same file for every call (nothing to reuse): greedy
tokens must be identical and logits equal within float noise, including after adapter changes
(the llama-server bug #26207 this must never have), cancellation, stop strings and context-full
endings. ``usage["cached_tokens"]`` shows that reuse happened (or did not). No numpy: this file
also runs in Pyodide; the adapter cases skip where ``capabilities.lora`` is False.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from llamart import Engine

GREEDY = {"temperature": 0.0, "repeat_penalty": 1.0}
# relative to the largest |logit|: a prefix evaluated in other batch shapes may round differently
LOGIT_NOISE = 1e-4


def _engine(path: str, n_ctx: int = 256) -> Engine:
    eng = Engine()
    eng.load_model(path, n_ctx=n_ctx, n_threads=1)
    return eng


@pytest.fixture
def reusing(fx: dict[str, str]) -> Iterator[Engine]:
    eng = _engine(fx["model_f32"])
    yield eng
    eng.dispose()


def _fresh(path: str, loras: dict[str, float] | None = None, n_ctx: int = 256) -> Engine:
    """The reference: a new engine with the same adapters, so nothing can be reused."""
    eng = _engine(path, n_ctx)
    for p, scale in (loras or {}).items():
        eng.set_lora(p, scale)
    return eng


def _fresh_complete(path: str, prompt: Any, loras: dict[str, float] | None = None,
                    n_ctx: int = 256, **kw: Any) -> str:
    eng = _fresh(path, loras, n_ctx)
    try:
        return eng.complete(prompt, **{**GREEDY, **kw})
    finally:
        eng.dispose()


def _close(a: Any, b: Any) -> bool:
    scale = max(max(abs(x) for x in b), 1.0)
    return max(abs(x - y) for x, y in zip(a, b, strict=True)) <= LOGIT_NOISE * scale


def test_a_growing_prompt_reuses_its_prefix_and_matches_a_fresh_engine(reusing, fx):
    prompt, previous = "Once upon a time", ""
    for turn in range(4):
        reply = reusing.complete(prompt, max_tokens=8, **GREEDY)
        cached = reusing.last_usage["cached_tokens"]
        assert reply == _fresh_complete(fx["model_f32"], prompt, max_tokens=8)
        if turn == 0:
            assert cached == 0
        else:  # at least the previous prompt came from the cache
            assert cached >= len(reusing.tokenize(previous)) - 1
        previous = prompt
        prompt = prompt + reply + " and then"


def test_reset_forgets_the_prefix_and_changes_no_result(reusing, fx):
    prompt = "Once upon a time"
    first = reusing.complete(prompt, max_tokens=8, **GREEDY)
    assert reusing.complete(prompt, max_tokens=8, **GREEDY) == first
    assert reusing.last_usage["cached_tokens"] > 0
    reusing.reset()
    assert reusing.complete(prompt, max_tokens=8, **GREEDY) == first
    assert reusing.last_usage["cached_tokens"] == 0  # evaluated from scratch after reset()


def test_logits_reuse_and_match_a_fresh_engine(reusing, fx):
    first = reusing.logits("Once upon a time there")
    again = reusing.logits("Once upon a time there")
    assert _close(again, first)  # only the last token re-evaluated
    other = reusing.logits("Once upon a midnight")  # shares "Once upon a"
    ref = _fresh(fx["model_f32"])
    try:
        assert _close(other, ref.logits("Once upon a midnight"))
        assert _close(first, ref.logits("Once upon a time there"))
    finally:
        ref.dispose()


def test_generate_after_logits_and_back(reusing, fx):
    reusing.logits("The cat sat on")
    text = reusing.complete("The cat sat on the mat", max_tokens=10, **GREEDY)
    assert reusing.last_usage["cached_tokens"] > 0
    assert text == _fresh_complete(fx["model_f32"], "The cat sat on the mat", max_tokens=10)


def test_cancelled_generation_leaves_a_reusable_cache(reusing, fx):
    gen = reusing.generate("Once upon a time", max_tokens=40, **GREEDY)
    got = []
    for chunk in gen:
        got.append(chunk)
        if len(got) == 5:
            gen.cancel()
    assert gen.finish_reason == "cancelled"
    prompt = "Once upon a time" + "".join(got)
    text = reusing.complete(prompt, max_tokens=12, **GREEDY)
    assert reusing.last_usage["cached_tokens"] > 0
    assert text == _fresh_complete(fx["model_f32"], prompt, max_tokens=12)


def test_stop_string_then_continue(reusing, fx):
    first = reusing.complete("Once upon a time", max_tokens=30, **GREEDY)
    stop = first[6:9]  # a stop string inside what greedy decoding produces
    assert stop
    cut = reusing.complete("Once upon a time", max_tokens=30, stop=[stop], **GREEDY)
    assert reusing.last_finish_reason == "stop" and cut == first[:first.index(stop)]
    # the cache holds tokens past the stop text: the next prompt must not see them
    prompt = "Once upon a time" + cut + " but"
    text = reusing.complete(prompt, max_tokens=12, **GREEDY)
    assert text == _fresh_complete(fx["model_f32"], prompt, max_tokens=12)


def test_context_full_ending_then_a_new_prompt(fx):
    eng = _engine(fx["model_tiny_ctx"], n_ctx=64)
    try:
        n_ctx = eng.model_info.n_ctx
        eng.complete("Once upon a time", max_tokens=n_ctx, **GREEDY)
        assert eng.last_finish_reason == "context"  # ran into the end of the context
        for prompt in ("Once upon a time", "Once upon a midnight dreary"):
            text = eng.complete(prompt, max_tokens=16, **GREEDY)
            assert eng.last_usage["cached_tokens"] > 0
            assert text == _fresh_complete(fx["model_tiny_ctx"], prompt, n_ctx=64,
                                           max_tokens=16)
    finally:
        eng.dispose()


def test_an_error_keeps_the_engine_and_its_cache_usable(reusing, fx):
    reusing.complete("Once upon a time", max_tokens=4, **GREEDY)
    too_long = "word " * 400
    with pytest.raises(Exception, match="context"):
        reusing.complete(too_long, max_tokens=4)
    text = reusing.complete("Once upon a time", max_tokens=8, **GREEDY)
    assert reusing.last_usage["cached_tokens"] > 0
    assert text == _fresh_complete(fx["model_f32"], "Once upon a time", max_tokens=8)


# ---- the adapter set keys the reuse ----

def _require_lora(engine: Engine) -> None:
    if not engine.capabilities.lora:
        pytest.skip(f"capabilities.lora is False: {engine.capabilities.lora_reason}")


def test_no_reuse_across_adapter_changes(reusing, fx):
    """llama-server #26207: a prefix computed under adapter A must never serve adapter B."""
    _require_lora(reusing)
    prompt = "Once upon a time"
    steps: list[dict[str, float]] = [
        {}, {fx["lora_a"]: 1.0}, {fx["lora_a"]: 0.5}, {fx["lora_b"]: 1.0},
        {fx["lora_a"]: 0.5, fx["lora_b"]: 1.0}, {},
    ]
    outputs = []
    for loras in steps:
        reusing.clear_loras()
        for p, s in loras.items():
            reusing.set_lora(p, s)
        text = reusing.complete(prompt, max_tokens=12, **GREEDY)
        assert reusing.last_usage["cached_tokens"] == 0  # the set changed: evaluated afresh
        assert text == _fresh_complete(fx["model_f32"], prompt, loras, max_tokens=12)
        again = reusing.complete(prompt, max_tokens=12, **GREEDY)
        assert again == text and reusing.last_usage["cached_tokens"] > 0  # same set: reused
        outputs.append(text)
    assert len(set(outputs[:-1])) > 1  # the adapters do change the text: the check has teeth


def test_logits_under_a_scale_change_are_not_stale(reusing, fx):
    _require_lora(reusing)
    reusing.set_lora(fx["lora_a"], 1.0)
    at_one = reusing.logits("Once upon a time")
    reusing.set_lora(fx["lora_a"], 0.25)
    at_quarter = reusing.logits("Once upon a time")
    assert at_quarter.tobytes() != at_one.tobytes()
    ref = _fresh(fx["model_f32"], {fx["lora_a"]: 0.25})
    try:
        assert _close(at_quarter, ref.logits("Once upon a time"))
    finally:
        ref.dispose()


# ---- a real model: a multi-turn chat ----

def test_real_chat_turns_match_fresh_engines(real_model):
    path = real_model("smollm2")
    eng = _engine(path, n_ctx=1024)
    messages = [{"role": "system", "content": "You are a helpful assistant."}]
    try:
        for question in ("What is the capital of France?", "And of Italy?",
                         "Name a river in one of them."):
            messages.append({"role": "user", "content": question})
            reply = eng.chat(messages, max_tokens=16, **GREEDY)
            cached = eng.last_usage["cached_tokens"]
            ref = _fresh(path, n_ctx=1024)
            try:
                assert reply == ref.chat(messages, max_tokens=16, **GREEDY)
            finally:
                ref.dispose()
            if len(messages) > 2:  # the history before this question came from the cache
                assert cached > 20
            messages.append({"role": "assistant", "content": reply})
    finally:
        eng.dispose()


def test_real_sliding_window_model_reuses_and_matches(real_model):
    """Gemma 3 mixes sliding-window and global attention layers (llama.cpp's iSWA cache)."""
    path = real_model("gemma3-270m")
    eng = _engine(path, n_ctx=512)
    try:
        first = "The capital of France is Paris. The capital of Italy is"
        second = first + " Rome. The capital of Spain is"
        eng.complete(first, max_tokens=4, **GREEDY)
        text = eng.complete(second, max_tokens=8, **GREEDY)
        assert eng.last_usage["cached_tokens"] >= len(eng.tokenize(first)) - 1
        assert text == _fresh_complete(path, second, n_ctx=512, max_tokens=8)
    finally:
        eng.dispose()
