"""A generation on a parallel Engine: posts its request to the scheduler and streams what it
gets back (the seam between a Generation and the scheduler; it never touches the Engine)."""

from __future__ import annotations

import random
import threading
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from typing import Any

from ..errors import backend_errors
from ..params import GenerationParams
from .async_generation import PYTHON_THREADS
from .generation import TextStream
from .scheduler import Request, Scheduler

__all__ = ["ScheduledRun"]

_END: Any = object()
_REASONS = {"eog": "stop", "length": "length", "context": "context", "cancelled": "cancelled",
            "error": "error"}


class ScheduledRun:
    """The running state of a Generation whose tokens come from a :class:`Scheduler`."""

    def __init__(self, scheduler: Scheduler, model: Any, tokens: list[int],
                 params: GenerationParams, key: Any, handles: list[Any],
                 release: Callable[[], None],
                 on_end: Callable[[ScheduledRun], None] = lambda run: None) -> None:
        self.params = params
        self.seed = params.seed if params.seed is not None else random.getrandbits(31)
        self.model = model
        self.finish_reason: str | None = None
        self._scheduler = scheduler
        self._release_once: Callable[[], None] | None = release  # gives back its adapters
        self._on_end = on_end
        self._req = Request(list(tokens), params, self.seed, key, handles)
        self._cancelled = False
        self._submitted = False
        self._releasing = threading.Lock()
        self._produced = 0

    @property
    def usage(self) -> dict[str, int]:
        return {"prompt_tokens": len(self._req.tokens), "completion_tokens": self._produced,
                "cached_tokens": self._req.cached, "seed": self.seed}

    def cancel(self) -> bool:
        self._cancelled = True
        running = self._req.end is None and self.finish_reason is None
        self._scheduler.cancel_soon(self._req)  # never blocks (an event loop may call this)
        return running

    def lifecycle(self) -> Iterator[str]:
        """The text chunks, stepping (or waiting for the driver) in the calling thread."""
        core = self._core(self._end)
        try:
            ask = next(core)
            while True:
                if ask is None:
                    try:
                        got = self._scheduler.pull(self._req)
                    except BaseException as e:  # noqa: BLE001 - raised in the core, mapped
                        ask = core.throw(e)
                    else:
                        ask = core.send(got)
                else:
                    yield ask
                    ask = next(core)
        except StopIteration:
            return
        finally:
            core.close()

    async def batches(self) -> AsyncIterator[list[str]]:
        """The text chunks of each step together, from the scheduler's driver thread: the
        event loop never blocks on the engine (it is woken when a step has news). Where no
        thread can be started (Pyodide), each step runs inline instead."""
        import asyncio  # here: importing asyncio costs ~40 ms per process

        loop = asyncio.get_running_loop()
        news = asyncio.Event()
        self._req.waker = lambda: loop.call_soon_threadsafe(news.set)
        core = self._core(self._end_soon)
        try:
            threaded = await loop.run_in_executor(None, self._submit_driven) \
                if PYTHON_THREADS else False
            ask = next(core)
            while True:
                if ask is not None:
                    out = [ask]
                    ask = next(core, _END)
                    while ask is not None and ask is not _END:
                        out.append(ask)
                        ask = next(core, _END)
                    yield out
                    if ask is _END:
                        return
                    continue
                try:
                    if threaded:
                        got = self._scheduler.poll(self._req)
                        while got is None:
                            news.clear()
                            got = self._scheduler.poll(self._req)
                            if got is None:
                                await news.wait()
                    else:
                        got = self._scheduler.pull(self._req)
                        await asyncio.sleep(0)
                except BaseException as e:  # noqa: BLE001 - raised in the core, mapped
                    ask = core.throw(e)
                else:
                    ask = core.send(got)
        except StopIteration:
            return
        finally:
            core.close()
            self._req.waker = None

    def _submit_driven(self) -> bool:
        """In a worker thread (submitting waits for the lock): start the scheduler's driver
        and post the request to it; False if no thread could be started."""
        if not self._scheduler.start_driver():
            return False
        if not self._cancelled and self.params.max_tokens:
            self._submitted = True
            self._scheduler.submit(self._req)
        return True

    def _end(self) -> None:
        self._scheduler.cancel(self._req)  # a no-op once it has ended
        self.abandon()

    def _end_soon(self) -> None:  # never blocks: the stepping thread finishes if it is busy
        self._scheduler.cancel_soon(self._req, then=self.abandon)

    def _core(self, finish: Callable[[], None]
              ) -> Generator[str | None, tuple[list[bytes], str | None], None]:
        """The run without I/O: yields None to get the next (pieces, end) of the request,
        and each text chunk; on exit ``finish`` cancels the request and gives its adapters
        back."""
        outcome = "cancelled"
        try:
            if self._cancelled:
                return
            if not self.params.max_tokens:
                outcome = "length"
                return
            if not self._submitted:
                self._submitted = True
                self._scheduler.submit(self._req)
            text = TextStream(self.params.stop)
            end: str | None = None
            while end is None:
                with backend_errors("eval"):
                    pieces, end = yield None
                for piece in pieces:
                    if self._cancelled:
                        return
                    self._produced += 1
                    chunk, matched = text.feed(piece)
                    if matched:
                        outcome = "stop"
                        if chunk:
                            yield chunk
                        return
                    if chunk:
                        yield chunk
                if self._cancelled:
                    return
            if end == "error" and self._req.error is not None:
                with backend_errors("eval"):
                    raise self._req.error
            chunk, matched = text.finish()
            outcome = "stop" if matched else _REASONS[end]
            if chunk:
                yield chunk
        except (GeneratorExit, KeyboardInterrupt):
            raise
        except BaseException:
            outcome = "error"
            raise
        finally:
            finish()
            self.finish_reason = outcome
            self._on_end(self)

    def abandon(self) -> None:
        """Give back what the request holds (idempotent; also for a run never started)."""
        with self._releasing:  # the driver thread may do this while a finalizer does too
            release, self._release_once = self._release_once, None
        if release is not None:
            release()
