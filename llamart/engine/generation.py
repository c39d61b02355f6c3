"""A generation: one streaming completion, as an iterator of text with its own state.

It steps the backend a few tokens per call (each step under the engine's lock), decodes the
pieces as UTF-8 across token boundaries, cuts the text at the first stop string, and records
why it ended (:data:`FINISH_REASONS`) and what it used.
"""

from __future__ import annotations

import codecs
import random
import time
import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ..bindings.base import StepEnd
from ..params import GenerationParams

if TYPE_CHECKING:
    from .engine import Engine
    from .model_state import LoadedModel

__all__ = ["FINISH_REASONS", "Generation", "GenerationRun", "StopMatcher", "TextStream",
           "next_step"]

FINISH_REASONS = ("stop", "length", "context", "cancelled", "error")
STEP_BUDGET_S = 0.05  # generation steps (tokens per C call) grow up to about this long
MAX_STEP = 32
_END_REASONS = {StepEnd.EOG: "stop", StepEnd.CONTEXT: "context"}


def next_step(elapsed: float, n: int) -> int:
    """Tokens to ask for in the next step: as many as fit the time budget at the last pace.

    Each step is one crossing into C (one JavaScript call in Pyodide); tokens still stream one
    by one to the caller, and a cancel request stops a step before its next token.
    """
    if n <= 0 or elapsed <= 0:
        return MAX_STEP if n > 0 else 1
    return max(1, min(MAX_STEP, int(STEP_BUDGET_S * n / elapsed)))


class StopMatcher:
    """Cuts streamed text at the first stop string, holding back what could start one."""

    def __init__(self, stops: tuple[str, ...]) -> None:
        self.stops = stops
        self.max_hold = max((len(s) for s in stops), default=1) - 1
        self.by_first: dict[str, list[str]] = {}
        for s in stops:
            self.by_first.setdefault(s[0], []).append(s)
        self.held = ""

    def feed(self, text: str, final: bool = False) -> tuple[str, bool]:
        """Text safe to emit now, and whether a stop string was found (text cut before it)."""
        buf = self.held + text
        self.held = ""
        if not self.stops or not buf:
            return buf, False
        found = [i for i in (buf.find(s) for s in self.stops) if i >= 0]
        if found:
            return buf[:min(found)], True
        if final:
            return buf, False
        for j in range(max(0, len(buf) - self.max_hold), len(buf)):
            tail = buf[j:]
            if any(s.startswith(tail) for s in self.by_first.get(buf[j], ())):
                self.held = tail
                return buf[:j], False
        return buf, False


class TextStream:
    """Token pieces (bytes) in, text out: UTF-8 decoded across pieces (invalid bytes become
    U+FFFD), cut at the first stop string."""

    def __init__(self, stops: tuple[str, ...]) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._stops = StopMatcher(stops)

    def feed(self, piece: bytes) -> tuple[str, bool]:
        """Text to emit now, and whether a stop string ended it."""
        return self._stops.feed(self._decoder.decode(piece))

    def finish(self) -> tuple[str, bool]:
        """The text held back, at the end."""
        return self._stops.feed(self._decoder.decode(b"", final=True), final=True)


class Generation:
    """One streaming completion: iterate it for str chunks.

    Made by :meth:`Engine.generate <llamart.Engine.generate>` (arguments already checked);
    nothing runs until the first ``next()``. ``close()`` (or leaving a ``for`` loop early, or
    dropping it) ends it and frees the engine at once; ``cancel()`` stops it before its next
    token, from any thread. ``finish_reason`` is None until it ends, then one of
    :data:`FINISH_REASONS`; ``usage`` counts prompt and generated tokens and gives the seed.
    """

    def __init__(self, engine: Engine | None, model: LoadedModel | None, tokens: list[int],
                 params: GenerationParams, *, run: Any = None) -> None:
        # the engine holds only the run, never this object: dropping it closes the run at once
        # (``run``: a ScheduledRun of a parallel engine instead of a GenerationRun)
        self._state = run if run is not None else GenerationRun(engine, model, tokens, params)
        self._run = self._state.lifecycle()
        abandon = getattr(self._state, "abandon", None)
        if abandon is not None:  # a run never started still gives back what it holds
            weakref.finalize(self, abandon)

    @property
    def params(self) -> GenerationParams:
        return self._state.params

    @property
    def finish_reason(self) -> str | None:
        return self._state.finish_reason

    @property
    def usage(self) -> dict[str, int]:
        """``prompt_tokens``, ``completion_tokens`` (so far) and ``seed``."""
        return self._state.usage

    def __iter__(self) -> Generation:
        return self

    def __next__(self) -> str:
        return next(self._run)

    def close(self) -> None:
        """End the generation now (finish reason "cancelled" unless it had already ended)."""
        self._run.close()
        if self._state.finish_reason is None:  # never started
            self._state.finish_reason = "cancelled"
            abandon = getattr(self._state, "abandon", None)
            if abandon is not None:
                abandon()

    def cancel(self) -> bool:
        """Stop before the next token (from any thread); True if it was streaming."""
        return self._state.cancel()

    def text(self) -> str:
        """The rest of the text as one string; the generation is closed after."""
        try:
            return "".join(self)
        finally:
            self.close()

    def __repr__(self) -> str:
        return f"<Generation finish_reason={self.finish_reason!r} usage={self.usage}>"


class GenerationRun:
    """The running state of a Generation: what the engine holds while it streams."""

    def __init__(self, engine: Engine, model: LoadedModel, tokens: list[int],
                 params: GenerationParams) -> None:
        self.params = params
        self.seed = params.seed if params.seed is not None else random.getrandbits(31)
        self.model = model  # the load it was made for: a different model refuses to run it
        self.finish_reason: str | None = None
        self._engine = engine
        self._tokens = tokens
        self._produced = 0
        self._cached = 0  # prompt tokens whose evaluation was reused from the previous call
        self._cancelled = False
        self._outcome = "cancelled"  # the finish reason until the generation decides otherwise
        self.lora: tuple[Any, list[Any], Any] | None = None  # a call's own set: (key, handles,
        # release); applied for this generation only, the engine's set put back after it

    @property
    def usage(self) -> dict[str, int]:
        return {"prompt_tokens": len(self._tokens), "completion_tokens": self._produced,
                "cached_tokens": self._cached, "seed": self.seed}

    def cancel(self) -> bool:
        self._cancelled = True
        return self._engine._interrupt(self)

    def abandon(self) -> None:
        """Give back a call's own adapters (idempotent; also for a run never started)."""
        lora, self.lora = self.lora, None
        if lora is not None:
            lora[2]()

    def lifecycle(self) -> Iterator[str]:
        if self._cancelled:  # cancelled before it started: it never runs
            self.finish_reason = "cancelled"
            self.abandon()
            return
        try:
            with self._engine._streaming(self):
                try:
                    self._prefill()
                    yield from self._decode()
                except (GeneratorExit, KeyboardInterrupt):
                    raise  # closed early or interrupted: "cancelled" unless already decided
                except BaseException:
                    self._outcome = "error"
                    raise
                finally:
                    self._restore_adapters()
                    self.finish_reason = self._outcome
        except BaseException:
            if self.finish_reason is None:  # refused at its start (model changed, busy)
                self.finish_reason = "error"
            raise
        finally:
            self.abandon()

    def _restore_adapters(self) -> None:
        if self.lora is not None:
            with self._engine._turn_any() as backend:
                self.model.adapters.reapply(backend)

    def _prefill(self) -> None:
        with self._engine._turn(self) as backend:
            if self.lora is not None:
                backend.apply_adapters(self.lora[1])
            if self.params.max_tokens:
                # the prefix the KV cache holds from the last call is reused (the C core clears
                # it on any adapter change, so it is always one computed under this set)
                self._cached = backend.eval_prompt(self._tokens)
                backend.sampler_init(self.params, self.seed)
                backend.sampler_accept(self._tokens)

    def _decode(self) -> Iterator[str]:
        text = TextStream(self.params.stop)
        remaining, step, reason = self.params.max_tokens, 1, "length"
        while remaining:  # the first step is one token, so chunking never delays first text
            n = min(step, remaining)
            got = self._step(n, n < remaining)
            if got is None:
                reason = "cancelled"
                break
            pieces, end, step = got
            remaining -= len(pieces)
            for piece in pieces:
                if self._cancelled:  # asked between two tokens of one step
                    break
                self._produced += 1
                chunk, matched = text.feed(piece)
                if matched:
                    self._outcome = "stop"
                    if chunk:
                        yield chunk
                    return
                if chunk:
                    yield chunk
            # StepEnd.CANCELLED without our cancel(): a request that came too late for an
            # earlier generation; the tokens returned are good, so carry on
            ended = "cancelled" if self._cancelled else _END_REASONS.get(end)
            if ended:
                reason = ended
                break
        chunk, matched = text.finish()
        self._outcome = "stop" if matched else reason
        if chunk:
            yield chunk

    def _step(self, n: int, eval_last: bool) -> tuple[list[bytes], str, int] | None:
        """Up to ``n`` tokens' pieces, why the step ended and the next step's size; None when
        cancelled before it."""
        with self._engine._turn(self) as backend:
            if self._cancelled:
                return None
            started = time.perf_counter()
            toks, end = backend.next_tokens(n, eval_last)
            pieces = [backend.token_to_piece(t) for t in toks]
            return pieces, end, next_step(time.perf_counter() - started, len(toks))
