"""A generation on a parallel Engine: posts its request to the scheduler and streams what it
gets back (the seam between a Generation and the scheduler; it never touches the Engine)."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any

from ..errors import backend_errors
from ..params import GenerationParams
from .generation import TextStream
from .scheduler import Request, Scheduler

__all__ = ["ScheduledRun"]

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
        self._produced = 0

    @property
    def usage(self) -> dict[str, int]:
        return {"prompt_tokens": len(self._req.tokens), "completion_tokens": self._produced,
                "cached_tokens": self._req.cached, "seed": self.seed}

    def cancel(self) -> bool:
        self._cancelled = True
        running = self._req.end is None and self.finish_reason is None
        self._scheduler.cancel(self._req)
        return running

    def lifecycle(self) -> Iterator[str]:
        outcome = "cancelled"
        try:
            if self._cancelled:
                return
            if not self.params.max_tokens:
                outcome = "length"
                return
            self._scheduler.submit(self._req)
            text = TextStream(self.params.stop)
            end: str | None = None
            while end is None:
                with backend_errors("eval"):
                    pieces, end = self._scheduler.pull(self._req)
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
            self._scheduler.cancel(self._req)  # a no-op once it has ended
            self.abandon()
            self.finish_reason = outcome
            self._on_end(self)

    def abandon(self) -> None:
        """Give back what the request holds (idempotent; also for a run never started)."""
        release, self._release_once = self._release_once, None
        if release is not None:
            release()
