"""The async twin of a :class:`~llamart.engine.generation.Generation`.

Each token is computed in a worker thread (inline where Python has no threads, e.g. Pyodide),
so the event loop keeps running while the model works.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from typing import Any

from .generation import Generation

__all__ = ["AsyncGeneration"]

_THREADS_AVAILABLE = sys.platform != "emscripten"  # Pyodide cannot start Python threads
_DONE = object()


class AsyncGeneration:
    """``async for`` over a Generation; ``await aclose()`` (or ``contextlib.aclosing``) frees
    the engine at once. ``cancel()``, ``finish_reason`` and ``usage`` are the Generation's."""

    def __init__(self, generation: Generation) -> None:
        self.generation = generation
        self._started = False
        self._run = _stream(generation)

    def __aiter__(self) -> AsyncGeneration:
        return self

    async def __anext__(self) -> str:
        self._started = True
        return await self._run.__anext__()

    async def aclose(self) -> None:
        await self._run.aclose()
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


async def _stream(gen: Generation) -> AsyncIterator[str]:
    import asyncio  # here, not at the top: importing asyncio costs ~40 ms per process
    import concurrent.futures

    if not _THREADS_AVAILABLE:
        try:
            for chunk in gen:
                yield chunk
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
            yield chunk
    finally:
        if fut is not None and not fut.done():
            # cancelled while a token was being computed: stop, and close the generation on
            # the worker as soon as that token is done
            gen.cancel()
            fut.add_done_callback(lambda _f: gen.close())
        else:
            gen.close()
        executor.shutdown(wait=False)
