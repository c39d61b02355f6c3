"""The Engine's async twins: agenerate / acomplete / achat and the AsyncGeneration object.

Tested against llamart.testing.FakeBackend (pure Python): no numpy, gguf or llama.cpp,
so this file runs unchanged in Pyodide. The fixtures (``fake``, ``fake_files``,
``fake_engine``, ``fake_loaded``) are in tests/conftest.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading

import pytest

from llamart import (
    Engine,
)
from llamart.testing.fake import EOS, FakeBackend, byte_tokens
from tests.support.platform_support import needs_threads, run_coroutine

# ---- async ----

def test_agenerate_matches_generate(fake_loaded: Engine, fake: FakeBackend) -> None:
    fake.script = byte_tokens("héllo".encode())

    async def main() -> list[str]:
        return [c async for c in fake_loaded.agenerate("x", max_tokens=6)]

    chunks = run_coroutine(main())
    assert "".join(chunks) == "héllo" and fake_loaded.last_finish_reason == "length"
    fake.script = byte_tokens(b"abc")
    assert run_coroutine(fake_loaded.acomplete("x", max_tokens=3)) == "abc"


def test_agenerate_validates_eagerly(fake_loaded: Engine) -> None:
    with pytest.raises(ValueError, match="top_p"):
        fake_loaded.agenerate("x", top_p=2.0)


def test_agenerate_aclose_releases(fake_loaded: Engine, fake: FakeBackend, fake_files) -> None:
    fake.script = byte_tokens(b"abcdef")

    async def main() -> str:
        it = fake_loaded.agenerate("x", max_tokens=6)
        first = await it.__anext__()
        await it.aclose()
        return first

    assert run_coroutine(main()) == "a"
    assert fake_loaded.last_finish_reason == "cancelled"
    assert fake_loaded.set_lora(fake_files["a"]) is True


@needs_threads
def test_agenerate_does_not_block_the_loop(fake_loaded: Engine, fake: FakeBackend) -> None:
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
        out = "".join([c async for c in fake_loaded.agenerate("x", max_tokens=2)])
        await task
        return out

    assert run_coroutine(main()) == "ab" and seen["released"] is True


@needs_threads
def test_agenerate_task_cancel_releases(fake_loaded: Engine, fake: FakeBackend, fake_files) -> None:
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
        async for _ in fake_loaded.agenerate("x", max_tokens=8):
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
        if fake_loaded.last_finish_reason is not None:
            break
        threading.Event().wait(0.01)
    assert fake_loaded.last_finish_reason == "cancelled" and calls["n"] == 2
    assert fake_loaded.set_lora(fake_files["a"]) is True


# ---- the generation object ----

def test_async_generation_object(fake_loaded: Engine, fake: FakeBackend) -> None:
    from llamart.engine.async_generation import AsyncGeneration

    fake.script = byte_tokens(b"abc") + [EOS]
    agen = fake_loaded.agenerate("x", max_tokens=5, seed=9)
    assert isinstance(agen, AsyncGeneration) and agen.finish_reason is None

    async def main() -> str:
        return await agen.text()

    assert run_coroutine(main()) == "abc"
    assert agen.finish_reason == "stop" and agen.usage["seed"] == 9
    assert agen.cancel() is False
    unstarted = fake_loaded.agenerate("x", max_tokens=2)
    run_coroutine(unstarted.aclose())
    assert unstarted.finish_reason == "cancelled" and fake.counts["eval_prompt"] == 1


# ---- chat: streaming, and the template in public ----

def test_achat_streams_the_reply(fake_loaded: Engine, fake: FakeBackend) -> None:
    from llamart.engine.async_generation import AsyncGeneration

    messages = [{"role": "user", "content": "hi"}]

    async def collect() -> list[str]:
        gen = fake_loaded.achat(messages, max_tokens=20, temperature=0.0)
        assert isinstance(gen, AsyncGeneration)
        return [chunk async for chunk in gen]

    fake.script = byte_tokens(b"Hi there") + [EOS]
    chunks = run_coroutine(collect())
    assert "".join(chunks) == "Hi there" and len(chunks) == 8
    assert fake_loaded.last_finish_reason == "stop"
    text, _add, parse = [a for n, a in fake.calls if n == "tokenize"][-1]
    assert text == "<s>user: hi</s><s>assistant: " and parse is True
