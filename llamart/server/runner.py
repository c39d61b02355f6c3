"""The server's one door to the Engine: admission (a bounded queue), adapter sets per request,
and getting the generations' text to the event loop.

* ``--parallel N`` > 1: the Engine is loaded with ``n_parallel=N`` and batches concurrent
  calls, each naming its adapter set (``lora=``): requests run at once (``concurrent``). The
  engine's scheduler steps in its own thread (llama-server's slot loop) and wakes the event
  loop when a step has news; each SSE event carries the text of one step (one or more tokens),
  as vLLM's streams do, with no thread per token.
* ``--parallel 1``: the Engine runs one generation at a time and refuses a second while one
  streams, so requests take turns (``_turn``); each token is computed in a worker thread.
* Embeddings name their adapter set too (``embed(..., lora=)``); with ``--parallel 1`` they
  take the same turn as generations (the set is applied for the call only).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import AsyncIterator, Callable
from typing import Any

from ..engine.async_generation import AsyncGeneration
from .errors import APIError

__all__ = ["Runner", "Stream"]

class Runner:
    """Runs requests on one Engine; at most ``slots + max_queue`` admitted at once."""

    def __init__(self, engine: Any, parallel: int, max_queue: int) -> None:
        self.engine = engine
        self.concurrent = parallel > 1  # the Engine was loaded with n_parallel=parallel
        self.slots = parallel
        self.limit = self.slots + max_queue
        self.active = 0  # admitted, not finished
        self.running = 0  # generations started, not closed
        workers = self.limit + 1 if self.concurrent else 1
        self._pool = concurrent.futures.ThreadPoolExecutor(workers, "llamart-serve")
        self._turn = None if self.concurrent else asyncio.Lock()

    # ---- admission ----

    def _admit(self) -> None:
        if self.active >= self.limit:
            raise APIError(503, f"the server is busy ({self.active} requests running or "
                           f"queued); retry later", code="queue_full",
                           headers={"Retry-After": "1"})
        self.active += 1

    async def _enter(self) -> None:
        self._admit()
        if self._turn is not None:
            try:
                await self._turn.acquire()
            except BaseException:
                self.active -= 1
                raise

    def _leave(self) -> None:
        self.active -= 1
        if self._turn is not None:
            self._turn.release()

    # ---- engine calls ----

    async def start(self, begin: Callable[..., Any], loras: dict[str, float]) -> Stream:
        """A Stream of the Generation ``begin(lora=loras)`` returns (arguments are checked by
        the engine before this returns: errors raise here, not in the stream)."""
        await self._enter()
        fut = self._pool.submit(begin, lora=dict(loras))
        try:
            gen = await asyncio.wrap_future(fut)
        except BaseException:
            fut.add_done_callback(_close_result)  # abandoned meanwhile: never left open
            self._leave()
            raise
        self.running += 1
        loop = asyncio.get_running_loop()

        def done() -> None:
            self.running -= 1
            self._leave()

        return Stream(gen, lambda: loop.call_soon_threadsafe(done))

    async def embed(self, texts: list[str], loras: dict[str, float]) -> tuple[list[Any], int]:
        """The vectors of ``texts`` under ``loras`` and their token count."""

        def work() -> tuple[list[Any], int]:
            eng = self.engine
            return (eng.embed(texts, lora=dict(loras)),
                    sum(len(eng.tokenize(t)) for t in texts))

        await self._enter()
        try:
            return await asyncio.wrap_future(self._pool.submit(work))
        finally:
            self._leave()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class Stream:
    """A Generation's text, one piece per step of the engine (:meth:`AsyncGeneration.batches
    <llamart.engine.async_generation.AsyncGeneration.batches>`: a parallel engine's step gives
    a sequence one or more tokens; otherwise one token at a time, from a worker thread).
    ``close()`` (idempotent, also on error, end or a dropped client) cancels it before its
    next token; ``on_done`` is called once the generation has closed."""

    def __init__(self, gen: Any, on_done: Callable[[], None]) -> None:
        self.gen = gen
        self._on_done = on_done
        self._closed = False
        self._async = AsyncGeneration(gen)
        self._batches: AsyncIterator[list[str]] | None = None  # made by the first __anext__

    @property
    def usage(self) -> dict[str, int]:
        return self.gen.usage

    @property
    def finish_reason(self) -> str | None:
        return self.gen.finish_reason

    def __aiter__(self) -> Stream:
        return self

    async def __anext__(self) -> str:
        if self._closed:
            raise StopAsyncIteration
        if self._batches is None:
            self._batches = self._async.batches()
        try:
            return "".join(await self._batches.__anext__())
        except BaseException:
            self.close()
            raise

    async def text(self) -> str:
        try:
            return "".join([c async for c in self])
        finally:
            self.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.gen.cancel()  # never blocks; stops before its next token
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop (shutting down): the cancel is enough
            self._on_done()
            return
        loop.create_task(_aclose(self._async, self._batches, self._on_done))


async def _aclose(agen: AsyncGeneration, batches: AsyncIterator[list[str]] | None,
                  on_done: Callable[[], None]) -> None:
    """Close ``agen`` once the task reading it (if any) has seen the cancel, then
    ``on_done``."""
    try:
        while getattr(batches, "ag_running", False):  # another task awaits its next step
            await asyncio.sleep(0.005)
        await agen.aclose()
    finally:
        on_done()


def _close_result(fut: concurrent.futures.Future[Any]) -> None:
    if not fut.cancelled() and fut.exception() is None:
        fut.result().close()
