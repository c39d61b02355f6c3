"""The Engine's generations: argument checks, streaming semantics (finish reasons, stop
strings, UTF-8, context), the Generation object, closing, cancelling and threads, and the
sampling options every entry point takes.

Tested against llamart.testing.FakeBackend (pure Python): no numpy, gguf or llama.cpp,
so this file runs unchanged in Pyodide. The fixtures (``fake``, ``fake_files``,
``fake_engine``, ``fake_loaded``) are in tests/conftest.py.
"""

from __future__ import annotations

import threading

import pytest

from llamart import (
    ContextOverflowError,
    Engine,
    EngineStateError,
    GenerationParams,
    LlamartError,
    ModelParams,
)
from llamart.bindings.base import ErrorKind
from llamart.testing.fake import BOS, EOS, N_VOCAB, FakeBackend, byte_tokens, word_token
from tests.support.fake_engine import logits_of
from tests.support.platform_support import needs_threads, run_coroutine

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
def test_generation_params_validated_eagerly(fake_loaded, fake, kwargs, exc, name) -> None:
    with pytest.raises(exc, match=name):
        fake_loaded.generate("hello", **kwargs)  # raised by the call, before any next()
    with pytest.raises(exc, match=name):
        fake_loaded.complete("hello", **kwargs)
    with pytest.raises(exc, match=name):
        fake_loaded.generate("hello", params=GenerationParams(**kwargs))
    assert fake.counts["eval_prompt"] == 0 and fake.counts["tokenize"] == 0


def test_prompt_validated(fake_loaded: Engine) -> None:
    with pytest.raises(ValueError, match="prompt is empty"):
        fake_loaded.generate("")
    with pytest.raises(TypeError, match="prompt"):
        fake_loaded.generate(5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="prompt is empty"):
        fake_loaded.logits("")


def test_generation_params_object(fake_loaded: Engine, fake: FakeBackend) -> None:
    fake.script = byte_tokens(b"abcdef")
    assert fake_loaded.complete("x", GenerationParams(max_tokens=2, seed=7)) == "ab"
    assert fake.seed == 7 and fake.sampler.max_tokens == 2
    assert fake_loaded.complete("x", params=GenerationParams(max_tokens=1, stop="zz")) == "c"
    assert fake.sampler.stop == ("zz",)
    with pytest.raises(TypeError, match="not both"):
        fake_loaded.generate("x", temperature=0.1, params=GenerationParams())


def test_seed(fake_loaded: Engine, fake: FakeBackend) -> None:
    a = fake_loaded.complete("x", max_tokens=8, temperature=1.0, seed=123)
    assert fake.seed == 123 and fake_loaded.last_usage["seed"] == 123
    assert fake_loaded.complete("x", max_tokens=8, temperature=1.0, seed=123) == a
    fake_loaded.complete("x", max_tokens=1, temperature=1.0)
    assert 0 <= fake.seed < 2**31 and fake_loaded.last_usage["seed"] == fake.seed


# ---- generation semantics ----

def test_stream_and_finish_reasons(fake_loaded: Engine, fake: FakeBackend) -> None:
    fake.script = [word_token(b"hello"), word_token(b" world"), EOS, *byte_tokens(b"zz")]
    chunks = list(fake_loaded.generate("x", max_tokens=10))
    assert chunks == ["hello", " world"] and fake_loaded.last_finish_reason == "stop"
    assert fake_loaded.last_usage == {"prompt_tokens": 2, "completion_tokens": 2,
                                 "cached_tokens": 0, "seed": fake.seed}
    fake.script = byte_tokens(b"abcdefgh")
    assert fake_loaded.complete("x", max_tokens=3) == "abc"
    assert fake_loaded.last_finish_reason == "length"


def test_max_tokens_and_eval_after(fake_loaded: Engine, fake: FakeBackend) -> None:
    fake.script = byte_tokens(b"abcdefgh")
    assert fake_loaded.complete("x", max_tokens=4) == "abcd"
    steps = [args for name, args in fake.calls if name == "next_tokens"]
    assert steps[0] == (1, True)  # the first token alone: no delay before the first text
    assert sum(n for n, _ in steps) == 4 and steps[-1][1] is False
    assert all(eval_last for _, eval_last in steps[:-1])
    assert fake.ctx == [BOS, *byte_tokens(b"xabc")]  # the last token is not evaluated
    assert fake_loaded.complete("x", max_tokens=0) == ""
    assert fake_loaded.last_finish_reason == "length" and len(steps) == fake.counts["next_tokens"]


def test_each_generation_evaluates_its_whole_prompt(fake_loaded: Engine, fake: FakeBackend) -> None:
    first = fake_loaded.complete("abc", max_tokens=6, temperature=0.0)
    second = fake_loaded.complete("abc", max_tokens=6, temperature=0.0)
    assert first == second
    evals = [args[0] for name, args in fake.calls if name == "eval_prompt"]
    assert evals == [[BOS] + byte_tokens(b"abc")] * 2  # the prompt from position 0, each time
    # all but the last token came from the cache
    assert fake_loaded.last_usage["cached_tokens"] == 3


def test_utf8_split_across_tokens(fake_loaded: Engine, fake: FakeBackend) -> None:
    text = "é€😀 ok"
    fake.script = byte_tokens(text.encode())
    chunks = list(fake_loaded.generate("x", max_tokens=len(text.encode())))
    assert "".join(chunks) == text and "\ufffd" not in "".join(chunks)
    assert chunks[:3] == ["é", "€", "😀"]
    fake.script = [word_token(b"\xe2\x82\xac"), *byte_tokens("€".encode())]
    assert fake_loaded.complete("x", max_tokens=4) == "€€"


def test_invalid_utf8_is_replaced(fake_loaded: Engine, fake: FakeBackend) -> None:
    fake.script = byte_tokens(b"a\xffb")
    assert fake_loaded.complete("x", max_tokens=3) == "a\ufffdb"
    fake.script = byte_tokens("é".encode()[:1])  # cut off by max_tokens
    assert fake_loaded.complete("x", max_tokens=1) == "\ufffd"


def test_stop_strings(fake_loaded: Engine, fake: FakeBackend) -> None:
    fake.script = byte_tokens(b"abcSTOPdef")
    chunks = list(fake_loaded.generate("x", max_tokens=20, stop="STOP"))
    assert "".join(chunks) == "abc" and fake_loaded.last_finish_reason == "stop"
    assert all("S" not in c for c in chunks)  # a possible stop prefix was never emitted
    assert fake_loaded.last_usage["completion_tokens"] == 7  # stopped right at the match
    fake.script = byte_tokens(b"abSTxySTOP")  # a prefix that does not complete is released
    assert fake_loaded.complete("x", max_tokens=8, stop=["STOP"]) == "abSTxyST"
    assert fake_loaded.last_finish_reason == "length"
    fake.script = byte_tokens(b"one, two. three")  # the earliest of several stops wins
    assert fake_loaded.complete("x", max_tokens=20, stop=[".", ","]) == "one"
    fake.script = byte_tokens("café!".encode())
    assert fake_loaded.complete("x", max_tokens=20, stop=("é!",)) == "caf"
    fake.script = [word_token(b"hello"), word_token(b" world")]  # stop inside one piece
    assert fake_loaded.complete("x", max_tokens=5, stop=["lo w"]) == "hel"


def test_many_stop_strings(fake_loaded: Engine, fake: FakeBackend) -> None:
    stops = [f"never{i}" for i in range(5000)] + ["END"]
    fake.script = byte_tokens(b"nevermind END")
    assert fake_loaded.complete("x", max_tokens=30, stop=stops) == "nevermind "


def test_context_full(fake_engine: Engine, fake: FakeBackend, fake_files) -> None:
    fake_engine.load_model(fake_files["model"], n_ctx=8)
    fake.script = byte_tokens(b"abcdefghij")
    out = fake_engine.complete("xy", max_tokens=100)  # prompt: BOS x y = 3 tokens
    assert fake_engine.last_finish_reason == "context"
    assert out == "abcdef"  # 5 evaluated fill the context; the 6th is sampled, not evaluated
    assert fake.counts["sampled"] == 6


def test_prompt_overflow(fake_engine: Engine, fake: FakeBackend, fake_files) -> None:
    fake_engine.load_model(fake_files["model"], n_ctx=8)
    with pytest.raises(ContextOverflowError, match="n_ctx=8"):
        fake_engine.generate("abcdefg")  # 8 tokens: no room to generate
    assert fake.counts["eval_prompt"] == 0
    assert len(fake_engine.logits("abcdefg")) == N_VOCAB  # logits only need the prompt to fit
    with pytest.raises(ContextOverflowError):
        fake_engine.logits("abcdefgh")
    fake_engine.generate("abcdef")  # 7 tokens: fine


def test_logits(fake_loaded: Engine) -> None:
    import array

    out = fake_loaded.logits("abc")
    assert isinstance(out, array.array) and out.typecode == "f" and len(out) == N_VOCAB
    assert memoryview(out).format == "f"
    assert list(fake_loaded.logits("abc")) == list(out)
    assert list(fake_loaded.logits("abd")) != list(out)
    assert list(fake_loaded.logits([BOS, *byte_tokens(b"abc")])) == list(out)


def test_backend_error_during_generation(fake_loaded: Engine, fake: FakeBackend) -> None:
    fake.script = byte_tokens(b"abcdef")
    it = fake_loaded.generate("x", max_tokens=5)
    assert next(it) == "a"
    fake.fail_next("next_tokens", ErrorKind.DECODE, "llama_decode failed")
    with pytest.raises(LlamartError, match="llama_decode failed"):
        next(it)
    assert fake_loaded.last_finish_reason == "error"
    fake.script = byte_tokens(b"ok")
    assert fake_loaded.complete("x", max_tokens=2) == "ok"  # still usable


def test_keyboard_interrupt_leaves_engine_usable(fake_loaded: Engine, fake: FakeBackend,
                                                 fake_files) -> None:
    count = {"n": 0}

    def hook() -> None:
        count["n"] += 1
        if count["n"] == 2:
            raise KeyboardInterrupt

    fake.on_next_token = hook
    fake.script = byte_tokens(b"abcdef")
    with pytest.raises(KeyboardInterrupt):
        fake_loaded.complete("x", max_tokens=5)
    assert fake_loaded.last_finish_reason == "cancelled"
    fake.on_next_token = None
    assert fake_loaded.set_lora(fake_files["a"]) is True
    fake.script = byte_tokens(b"ok")
    assert fake_loaded.complete("x", max_tokens=2) == "ok"


# ---- streaming, closing, cancelling, threads ----

def test_changes_refused_while_streaming(fake_loaded: Engine, fake: FakeBackend,
                                         fake_files) -> None:
    fake.script = byte_tokens(b"abcdef")
    it = fake_loaded.generate("x", max_tokens=6)
    assert next(it) == "a"
    for call in [lambda: fake_loaded.set_lora(fake_files["a"]),
                 lambda: fake_loaded.remove_lora(fake_files["a"]),
                 fake_loaded.clear_loras, lambda: fake_loaded.load_model(fake_files["model"]),
                 fake_loaded.unload_model, lambda: fake_loaded.logits("x"),
                 lambda: fake_loaded.generate("y"), lambda: fake_loaded.complete("y")]:
        with pytest.raises(EngineStateError, match="generation is streaming"):
            call()
    assert fake_loaded.tokenize("ab", add_special=False) == byte_tokens(b"ab")  # reading is fine
    assert fake_loaded.metadata and fake_loaded.loras == {}
    assert "".join(it) == "bcdef" and fake_loaded.last_finish_reason == "length"
    assert fake_loaded.set_lora(fake_files["a"]) is True


def test_generator_not_started_holds_nothing(fake_loaded: Engine, fake: FakeBackend,
                                             fake_files) -> None:
    it = fake_loaded.generate("x", max_tokens=3)
    assert fake_loaded.set_lora(fake_files["a"]) is True  # not started: nothing held
    del it
    fake.script = byte_tokens(b"k")
    assert fake_loaded.complete("x", max_tokens=1) == "k"


def test_closing_the_generator_releases(fake_loaded: Engine, fake: FakeBackend, fake_files) -> None:
    fake.script = byte_tokens(b"abcdef")
    it = fake_loaded.generate("x", max_tokens=6)
    next(it)
    it.close()
    assert fake_loaded.last_finish_reason == "cancelled"
    assert fake_loaded.set_lora(fake_files["a"]) is True
    for _chunk in fake_loaded.generate("x", max_tokens=6):
        break  # leaving the loop releases at once
    assert fake_loaded.last_finish_reason == "cancelled"
    assert fake_loaded.remove_lora(fake_files["a"]) is True


def test_dispose_ends_a_suspended_generation(fake_engine: Engine, fake: FakeBackend,
                                             fake_files) -> None:
    fake_engine.load_model(fake_files["model"])
    fake_engine.set_lora(fake_files["a"])
    fake.script = byte_tokens(b"abc")
    it = fake_engine.generate("x", max_tokens=3)
    next(it)
    fake_engine.dispose()
    with pytest.raises(EngineStateError, match="disposed"):
        next(it)
    assert fake.loaded_path is None and fake.live == set() and fake.disposed


def test_cancel_without_generation(fake_loaded: Engine, fake: FakeBackend) -> None:
    assert fake_loaded.cancel() is False
    fake.script = byte_tokens(b"ok")
    assert fake_loaded.complete("x", max_tokens=2) == "ok"
    assert fake_loaded.last_finish_reason == "length"  # an earlier cancel() does not leak in


def test_cancel_in_same_thread(fake_loaded: Engine, fake: FakeBackend) -> None:
    fake.script = byte_tokens(b"abcdef")
    out = []
    for chunk in fake_loaded.generate("x", max_tokens=6):
        out.append(chunk)
        if len(out) == 2:
            assert fake_loaded.cancel() is True
    assert out == ["a", "b"] and fake_loaded.last_finish_reason == "cancelled"


@needs_threads
def test_cancel_from_another_thread(fake_loaded: Engine, fake: FakeBackend) -> None:
    fake.script = byte_tokens(b"abcdefgh")
    calls = {"n": 0}

    def hook() -> None:
        calls["n"] += 1
        if calls["n"] == 3:  # cancel while token 3 is being computed
            t = threading.Thread(target=fake_loaded.cancel)
            t.start()
            t.join()

    fake.on_next_token = hook
    out = fake_loaded.complete("x", max_tokens=8)
    assert fake.counts["sampled"] == 3  # token 3 completes inside the step, no 4th
    assert "abc".startswith(out)  # nothing is handed out once cancel() has returned
    assert fake_loaded.last_finish_reason == "cancelled"


def test_stale_cancel_request_does_not_end_a_later_generation(fake_loaded: Engine,
                                                            fake: FakeBackend) -> None:
    fake.request_cancel()  # e.g. cancel() racing the end of an earlier generation
    fake.script = byte_tokens(b"abcd")
    assert fake_loaded.complete("x", max_tokens=4) == "abcd"
    assert fake_loaded.last_finish_reason == "length"


def test_cancel_between_tokens_of_one_step(fake_loaded: Engine, fake: FakeBackend) -> None:
    fake.script = byte_tokens(b"abcdefgh")
    seen = []
    for chunk in fake_loaded.generate("x", max_tokens=8):
        seen.append(chunk)
        if chunk == "b":  # "b".."h" came back from one step: the rest is dropped
            fake_loaded.cancel()
    assert seen == ["a", "b"] and fake_loaded.last_finish_reason == "cancelled"
    assert fake_loaded.last_usage["completion_tokens"] == 2


@needs_threads
def test_calls_from_other_threads_during_generation(fake_loaded: Engine, fake: FakeBackend,
                                                    fake_files) -> None:
    fake.script = byte_tokens(b"abcd")
    it = fake_loaded.generate("x", max_tokens=4)
    next(it)
    results: dict[str, object] = {}

    def other() -> None:
        try:
            fake_loaded.set_lora(fake_files["a"])
        except EngineStateError as e:
            results["set_lora"] = e
        try:
            results["generate"] = fake_loaded.complete("y", max_tokens=1)
        except EngineStateError as e:
            results["generate"] = e
        results["tokenize"] = fake_loaded.tokenize("q", add_special=False)

    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert isinstance(results["set_lora"], EngineStateError)
    assert isinstance(results["generate"], EngineStateError)
    assert results["tokenize"] == byte_tokens(b"q")
    assert "".join(it) == "bcd"


@needs_threads
def test_generation_consumed_in_another_thread(fake_loaded: Engine, fake: FakeBackend) -> None:
    fake.script = byte_tokens(b"abc")
    it = fake_loaded.generate("x", max_tokens=3)
    out: list[str] = []
    t = threading.Thread(target=lambda: out.extend(it))
    t.start()
    t.join()
    assert out == ["a", "b", "c"] and fake_loaded.last_finish_reason == "length"


@needs_threads
def test_concurrent_calls_are_serialized(fake_loaded: Engine, fake: FakeBackend,
                                         fake_files) -> None:
    errors: list[BaseException] = []
    base = logits_of(fake_loaded)

    def lora_worker() -> None:
        try:
            for i in range(40):
                fake_loaded.set_lora(fake_files["a"], i / 10)
                fake_loaded.set_lora(fake_files["b"])
                fake_loaded.remove_lora(fake_files["a"])
                fake_loaded.clear_loras()
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    def read_worker() -> None:
        try:
            for _ in range(40):
                assert len(fake_loaded.logits("abc")) == N_VOCAB
                fake_loaded.tokenize("abc")
                fake_loaded.lora_metadata(fake_files["a"])
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=f) for f in (lora_worker, read_worker, lora_worker)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert fake.violations == []  # never two calls inside the backend at once
    assert fake_loaded.loras == {} and fake.live == set() and logits_of(fake_loaded) == base


# ---- the generation object ----

def test_generate_returns_a_generation(fake_loaded: Engine, fake: FakeBackend) -> None:
    from llamart.engine.generation import Generation

    fake.script = byte_tokens(b"abc") + [EOS]
    gen = fake_loaded.generate("x", max_tokens=10, seed=3)
    assert isinstance(gen, Generation) and iter(gen) is gen
    assert gen.finish_reason is None and fake.counts["eval_prompt"] == 0  # nothing ran yet
    assert next(gen) == "a" and gen.finish_reason is None
    assert gen.usage == {"prompt_tokens": 2, "completion_tokens": 1, "cached_tokens": 0,
                         "seed": 3}
    assert gen.text() == "bc"
    assert gen.finish_reason == "stop" == fake_loaded.last_finish_reason
    assert gen.usage == fake_loaded.last_usage == {"prompt_tokens": 2, "completion_tokens": 3,
                                             "cached_tokens": 0, "seed": 3}
    assert "finish_reason='stop'" in repr(gen)


def test_generation_close_and_cancel(fake_loaded: Engine, fake: FakeBackend, fake_files) -> None:
    fake.script = byte_tokens(b"abcdef")
    gen = fake_loaded.generate("x", max_tokens=6)
    assert next(gen) == "a"
    gen.close()
    assert gen.finish_reason == "cancelled" == fake_loaded.last_finish_reason
    assert gen.usage["completion_tokens"] == 1
    assert fake_loaded.set_lora(fake_files["a"]) is True  # the engine is free again
    with pytest.raises(StopIteration):
        next(gen)

    fake.script = byte_tokens(b"abcdef")
    gen = fake_loaded.generate("x", max_tokens=6)
    out = []
    for chunk in gen:
        out.append(chunk)
        if chunk == "b":
            assert gen.cancel() is True  # the generation's own cancel()
    assert out == ["a", "b"] and gen.finish_reason == "cancelled"
    assert gen.cancel() is False  # not streaming any more


def test_generation_closed_or_cancelled_before_it_starts(fake_loaded: Engine,
                                                         fake: FakeBackend) -> None:
    fake.script = byte_tokens(b"ok")
    assert fake_loaded.complete("x", max_tokens=2) == "ok"
    for end in ("close", "cancel"):
        gen = fake_loaded.generate("x", max_tokens=3)
        if end == "close":
            assert gen.close() is None
        else:
            assert gen.cancel() is False  # nothing was streaming
        assert list(gen) == [] and gen.finish_reason == "cancelled"
        assert fake.counts["eval_prompt"] == 1  # it never reached the backend
        assert fake_loaded.last_finish_reason == "length"  # the engine's record is untouched


def test_cancelling_one_generation_leaves_the_next_alone(fake_loaded: Engine,
                                                          fake: FakeBackend) -> None:
    fake.script = byte_tokens(b"abcdef")
    first = fake_loaded.generate("x", max_tokens=3)
    assert first.text() == "abc"
    assert first.cancel() is False  # ended: a late cancel() is a no-op
    second = fake_loaded.generate("x", max_tokens=3)
    assert second.text() == "def" and second.finish_reason == "length"


def test_dropping_a_started_generation_frees_the_engine(fake_loaded: Engine, fake: FakeBackend,
                                                        fake_files) -> None:
    fake.script = byte_tokens(b"abcdef")
    gen = fake_loaded.generate("x", max_tokens=6)
    next(gen)
    del gen  # no close(): the engine holds no reference to it, so it ends at once
    assert fake_loaded.last_finish_reason == "cancelled"
    assert fake_loaded.set_lora(fake_files["a"]) is True


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
def test_every_entry_point_takes_every_option(fake_loaded: Engine, fake: FakeBackend,
                                              entry: str) -> None:
    options = dict(max_tokens=2, temperature=0.5, top_k=7, top_p=0.5, min_p=0.25,
                   repeat_penalty=1.3, repeat_last_n=17, seed=11, stop=["zz"])
    fake.script = byte_tokens(b"ok")
    assert _entry_points(fake_loaded)[entry](**options) == "ok"
    assert fake.sampler == GenerationParams(**dict(options, stop=("zz",)))
    assert fake.sampler.repeat_last_n == 17 and fake.seed == 11
    with pytest.raises(ValueError, match="repeat_last_n"):
        _entry_points(fake_loaded)[entry](repeat_last_n=-1)
    with pytest.raises(TypeError, match="unexpected keyword argument 'top_q'"):
        _entry_points(fake_loaded)[entry](top_q=0.5)


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


def test_positional_params_forms_still_work(fake_loaded: Engine, fake: FakeBackend) -> None:
    fake.script = byte_tokens(b"abc")
    assert fake_loaded.chat([{"role": "user", "content": "q"}],
                       GenerationParams(max_tokens=2, repeat_last_n=5)) == "ab"
    assert fake.sampler.repeat_last_n == 5
    with pytest.raises(TypeError, match="once"):
        fake_loaded.complete("x", GenerationParams(), params=GenerationParams())
    with pytest.raises(TypeError, match="not both"):
        fake_loaded.complete("x", repeat_last_n=3, params=GenerationParams())


# ---- issue 22: a generation refused at its start ----

def test_generation_refused_at_its_start_ends_with_error(fake_loaded: Engine, fake: FakeBackend,
                                                          fake_files) -> None:
    fake.script = byte_tokens(b"ab")
    assert fake_loaded.complete("x", max_tokens=2) == "ab"
    stale = fake_loaded.generate("x", max_tokens=2)
    fake_loaded.load_model(fake_files["model2"], n_ctx=64)
    with pytest.raises(EngineStateError, match="model changed"):
        next(stale)
    assert stale.finish_reason == "error"
    stale.close()
    assert stale.finish_reason == "error"  # close() does not turn it into "cancelled"
    assert fake_loaded.last_finish_reason == "length"  # the engine's last generation is untouched

    fake.script = byte_tokens(b"cd")
    waiting = fake_loaded.generate("y", max_tokens=2)
    running = fake_loaded.generate("z", max_tokens=2)
    assert next(running) == "c"
    with pytest.raises(EngineStateError, match="generation is streaming"):
        next(waiting)
    assert waiting.finish_reason == "error"
    assert "".join(running) == "d" and running.finish_reason == "length"


# ---- issue 22: a keyword beside params= is never ignored ----

def test_a_keyword_beside_params_is_refused_even_at_its_default(fake_loaded: Engine,
                                                               fake: FakeBackend,
                                                               fake_files) -> None:
    p = GenerationParams(max_tokens=10)
    with pytest.raises(TypeError, match=r"not both \(got max_tokens=\)"):
        fake_loaded.generate("x", max_tokens=64, params=p)
    for name, call in _entry_points(fake_loaded).items():
        with pytest.raises(TypeError, match=r"not both \(got temperature=\)"):
            call(temperature=0.8, params=p)
        with pytest.raises(TypeError, match=r"not both \(got max_tokens=\)"):
            call(max_tokens=64, params=p)
        fake.script = byte_tokens(b"ok")
        assert call(params=GenerationParams(max_tokens=2)) == "ok", name
    with pytest.raises(TypeError, match=r"not both \(got n_ctx=\)"):
        fake_loaded.load_model(fake_files["model"], n_ctx=2048, params=ModelParams(n_ctx=64))
    with pytest.raises(TypeError, match=r"not both \(got use_mmap=\)"):
        fake_loaded.load_model(fake_files["model"], ModelParams(n_ctx=64), use_mmap=True)
    assert fake.counts["load_model"] == 1  # only the fixture's load


def test_the_defaults_are_the_dataclasses(fake_engine: Engine, fake: FakeBackend,
                                          fake_files) -> None:
    import inspect

    from llamart.params import UNSET

    fake_engine.load_model(fake_files["model"])
    assert fake.model_params == ModelParams()
    sig = inspect.signature(Engine.load_model).parameters
    assert {k: sig[k].default for k in ("n_ctx", "n_batch", "use_mmap", "chat_template")} ==\
        {"n_ctx": 2048, "n_batch": 512, "use_mmap": True, "chat_template": None}
    assert inspect.signature(Engine.achat).parameters["max_tokens"].default == 64
    assert repr(UNSET) == "UNSET" and type(UNSET)() is UNSET
    fake.script = byte_tokens(b"a" * 70)
    fake_engine.complete("x")
    assert fake.sampler == GenerationParams()
