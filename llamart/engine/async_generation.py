"""The async twin of a :class:`~llamart.engine.generation.Generation`.

The event loop keeps running while the model works: on a parallel engine the scheduler's
driver thread steps and wakes the loop when a step has news; otherwise each token is computed
in a worker thread; inline where Python has no threads (Pyodide).
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from typing import Any

from .generation import Generation

__all__ = ["AsyncGeneration"]

PYTHON_THREADS = sys.platform != "emscripten"  # Pyodide cannot start Python threads
_DONE = object()


class AsyncGeneration:
    """``async for`` over a Generation; ``await aclose()`` (or ``contextlib.aclosing``) frees
    the engine at once. ``cancel()``, ``finish_reason`` and ``usage`` are the Generation's."""

    def __init__(self, generation: Generation) -> None:
        self.generation = generation
        self._started = False
        self._batches = _batches(generation)
        self._run = _flat(self._batches)

    def __aiter__(self) -> AsyncGeneration:
        return self

    async def __anext__(self) -> str:
        self._started = True
        return await self._run.__anext__()

    def batches(self) -> AsyncIterator[list[str]]:
        """The chunks in groups, as the engine produces them (a parallel engine's step gives
        each sequence one or more tokens at a time); instead of iterating this object."""
        self._started = True
        return self._batches

    async def aclose(self) -> None:
        await self._run.aclose()
        await self._batches.aclose()
        if not self._started:
            self.generation.close()

    def cancel(self) -> bool:
        return self.generation.cancel()

    @property
    def finish_reason(self) -> str | None:
        return self.generation.finish_reason

    @property
    def usage(self) -> dict[str, int]:
        return self.generation.usage

    async def text(self) -> str:
        """The rest of the text as one string; closed after."""
        try:
            return "".join([chunk async for chunk in self])
        finally:
            await self.aclose()


async def _flat(batches: AsyncIterator[list[str]]) -> AsyncIterator[str]:
    try:
        async for batch in batches:
            for chunk in batch:
                yield chunk
    finally:
        await batches.aclose()  # type: ignore[attr-defined]


async def _batches(gen: Generation) -> AsyncIterator[list[str]]:
    import asyncio  # here, not at the top: importing asyncio costs ~40 ms per process
    import concurrent.futures

    scheduled = getattr(gen._state, "batches", None)  # noqa: SLF001 - a parallel engine's run
    if scheduled is not None:
        run = scheduled()
        try:
            async for batch in run:
                yield batch
        finally:
            await run.aclose()
        return

    if not PYTHON_THREADS:
        try:
            for chunk in gen:
                yield [chunk]
                await asyncio.sleep(0)
        finally:
            gen.close()
        return
    executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="llamart-gen")
    fut: concurrent.futures.Future[Any] | None = None
    try:
        while True:
            fut = executor.submit(next, gen, _DONE)
            chunk = await asyncio.wrap_future(fut)
            fut = None
            if chunk is _DONE:
                return
            yield [chunk]
    finally:
        if fut is not None and not fut.done():
            # cancelled while a token was being computed: stop, and close the generation on
            # the worker as soon as that token is done
            gen.cancel()
            fut.add_done_callback(lambda _f: gen.close())
        else:
            gen.close()
        executor.shutdown(wait=False)
