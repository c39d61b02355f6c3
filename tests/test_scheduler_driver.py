"""The parallel engine's driver thread (``Scheduler.start_driver``), which async callers (a
server's streams, ``agenerate``) start: the event loop is woken by each step instead of a thread
per token. The reference is a lone engine running each call alone, token for token on the tiny
F32 model; the driver must also give way to other threads' calls, end by itself when idle, and
give back what cancelled streams held.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from llamart import Engine
from llamart.engine import scheduler as scheduler_mod
from tests.support.platform_support import threads_available
from tests.test_parallel import N_TOKENS, PROMPTS, _lone, _mixed

pytestmark = pytest.mark.skipif(not threads_available(),
                                reason="the driver is a thread (Pyodide steps inline, tested "
                                       "by test_parallel's async test)")


@pytest.fixture
def engine(fx: dict[str, str]) -> Any:
    e = Engine()
    e.load_model(fx["model_f32"], n_ctx=512, n_threads=1, n_parallel=4)
    yield e
    e.dispose()


async def _collect(gen: Any) -> tuple[str, int]:
    """The text of an AsyncGeneration read step by step, and how many steps brought text."""
    text, batches = "", 0
    async for batch in gen.batches():
        assert batch, "a step's batch is never empty"
        text += "".join(batch)
        batches += 1
    return text, batches


def test_async_streams_through_the_driver_equal_a_lone_engine(engine, fx) -> None:
    calls = _mixed(fx, 6) if engine.capabilities.lora else [(p, {}) for p in PROMPTS[:6]]

    async def main() -> list[tuple[str, int]]:
        gens = [engine.agenerate(p, max_tokens=N_TOKENS, temperature=0, lora=lora)
                for p, lora in calls]
        return list(await asyncio.gather(*(_collect(g) for g in gens)))

    got = asyncio.run(main())
    assert [t for t, _ in got] == _lone(fx["model_f32"], calls)
    sched = engine._model.scheduler  # noqa: SLF001
    assert sched is not None and not sched.busy
    assert engine._model.lora_cache.in_use() == {}  # noqa: SLF001


def test_cancelled_and_dropped_async_streams_free_their_slots_and_adapters(engine, fx) -> None:
    lora = {fx["lora_a"]: 1.0} if engine.capabilities.lora else {}
    keep = [(p, lora if i % 2 else {}) for i, p in enumerate(PROMPTS[:3])]

    async def main() -> list[str]:
        kept = [engine.agenerate(p, max_tokens=N_TOKENS, temperature=0, lora=la)
                for p, la in keep]
        doomed = [engine.agenerate(p, max_tokens=200, temperature=0, lora=lora)
                  for p in PROMPTS[3:7]]

        async def stop_after_first(i: int, gen: Any) -> None:
            async for _chunk in gen:
                break
            if i % 2:
                gen.cancel()  # from the event loop: never blocks
            await gen.aclose()

        results = await asyncio.gather(*(_collect(g) for g in kept),
                                       *(stop_after_first(i, g) for i, g in enumerate(doomed)))
        return [t for t, _ in results[:len(kept)]]

    assert asyncio.run(main()) == _lone(fx["model_f32"], keep)
    sched = engine._model.scheduler  # noqa: SLF001
    deadline = time.monotonic() + 10  # releases asked of a busy driver run at its next loop
    while engine._model.lora_cache.in_use() and time.monotonic() < deadline:  # noqa: SLF001
        time.sleep(0.05)
    assert engine._model.lora_cache.in_use() == {}  # noqa: SLF001
    assert not sched.busy
    # and the engine still answers like a lone one
    assert engine.complete(PROMPTS[0], max_tokens=N_TOKENS, temperature=0) == \
        _lone(fx["model_f32"], [(PROMPTS[0], {})])[0]


def test_the_driver_gives_way_to_calls_from_other_threads(engine, fx) -> None:
    """While async streams keep the driver stepping, tokenize/embed/complete from another
    thread are served between its steps, not after the streams end."""
    sched = engine._model.scheduler  # noqa: SLF001
    long = {"max_tokens": 150, "temperature": 0.8, "seed": 1}  # sampled: no early end
    gens: list[Any] = []
    served: list[tuple[int, bool]] = []  # (tokens the streams had made, any still running)

    def made() -> int:
        return sum(g.usage["completion_tokens"] for g in gens)

    def other_thread() -> None:
        for _ in range(5):
            engine.tokenize("hello world")
            engine.embed("hello world")
        engine.complete("hi", max_tokens=2, temperature=0)
        served.append((made(), any(g.finish_reason is None for g in gens)))

    async def main() -> None:
        gens.extend(engine.agenerate(p, **long) for p in PROMPTS[:3])
        tasks = [asyncio.ensure_future(_collect(g)) for g in gens]
        while sched.steps < 2:  # the driver is stepping
            await asyncio.sleep(0.001)
        t = threading.Thread(target=other_thread)
        t.start()
        await asyncio.gather(*tasks)
        t.join(60)
        assert not t.is_alive()

    asyncio.run(main())
    total = made()
    assert total >= 3 * 100, "the streams ran long enough to tell"
    assert served and served[0][1] and served[0][0] < total - 30, \
        f"served after {served} of {total} tokens: starved by the driver"


def test_the_driver_ends_when_idle_and_restarts(engine, monkeypatch) -> None:
    monkeypatch.setattr(scheduler_mod, "DRIVER_IDLE_S", 0.2)
    sched = engine._model.scheduler  # noqa: SLF001

    async def one() -> str:
        return await engine.acomplete("hello", max_tokens=4, temperature=0)

    first = asyncio.run(one())
    assert sched._driver is not None  # noqa: SLF001
    deadline = time.monotonic() + 10
    while sched._driver is not None and time.monotonic() < deadline:  # noqa: SLF001
        time.sleep(0.05)
    assert sched._driver is None, "the driver thread did not end when idle"  # noqa: SLF001
    assert not [t for t in threading.enumerate() if t.name == "llamart-scheduler"]
    assert asyncio.run(one()) == first  # a new driver serves the next caller


def test_dispose_while_async_streams_run_ends_them(fx) -> None:
    e = Engine()
    e.load_model(fx["model_f32"], n_ctx=512, n_threads=1, n_parallel=2)

    async def main() -> list[Any]:
        gens = [e.agenerate(p, max_tokens=400, temperature=0.8, seed=2) for p in PROMPTS[:2]]
        tasks = [asyncio.ensure_future(_collect(g)) for g in gens]
        await asyncio.sleep(0.05)
        await asyncio.get_running_loop().run_in_executor(None, e.dispose)
        return await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 30)

    results = asyncio.run(main())
    assert len(results) == 2  # each ended (text so far, or an error naming the unload)
    for r in results:
        assert not isinstance(r, BaseException) or "unloaded" in str(r) or \
            "disposed" in str(r), r
