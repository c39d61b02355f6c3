"""The scheduler of a parallel Engine (``n_parallel`` > 1): the one owner of the context.

Callers post requests (prompt tokens, sampling, an adapter set) and pull tokens; every step is
one :meth:`ParallelBackend.step` (continuous batching: prompt chunks and one token per
generating sequence in one decode) over every running sequence, whatever its adapter set: each
slot is given its request's set (``slot_adapters``) and llama.cpp, patched
(cmake/patches/llama-seq-lora-scales.patch), applies each token's own set in the shared decode.
llama-server instead decodes only the slots whose set equals the first busy slot's. Decisions:

* Whichever caller needs a token runs the next step for everybody, under the engine's lock
  (so it works the same where Python has no threads, in Pyodide), and a caller that stops
  pulling never holds the others up: their tokens are buffered. Async callers (a server's
  streams) instead start a driver thread that steps while requests run, as llama-server's slot
  loop does: the event loop only collects each step's tokens (``poll``), no thread per token,
  and decoding overlaps the callers' own work. Sync callers then wait for the driver's steps.
* Requests take free slots in arrival order (at most ``n_parallel`` run; the rest wait).
  A request gets the idle slot whose KV shares the longest prefix with its prompt under the
  same adapter set, else the least recently used one. An idle slot's KV is kept for reuse;
  before it is overwritten or evicted it is saved to the prompt cache (host memory, LRU,
  bounded), keyed by adapter set and tokens, and restored from there when a prompt continues it.
* No request waits for another's adapter set: every running request gets a token every round.
  A step runs several decode rounds (as many as take about STEP_BUDGET_S at the last pace), one
  crossing into the core for several tokens.
* A full KV cache evicts idle slots (least recently used first, saved to the prompt cache);
  if running sequences alone fill it, the newest ones sit out a step until others finish, and
  a sequence alone that cannot continue ends with finish reason "context".
* Nothing computed under one adapter set serves another: the C core tags each slot's KV with
  the set it was computed under and refuses reuse, restore and decode under any other.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..bindings import _c_constants as C
from ..bindings._c_api import kind
from ..bindings.base import BackendError, ParallelBackend
from ..params import GenerationParams
from .engine_lock import EngineLock

__all__ = ["AdapterKey", "PromptCache", "Request", "Scheduler"]

AdapterKey = tuple[tuple[str, float], ...]  # ((path, scale), ...) in order; () = base model

# lm_step's per-slot status codes
_OK, _EOG, _CONTEXT = C.LM_OK, C.LM_EOG, C.LM_ERR_CONTEXT
STEP_BUDGET_S = 0.05  # a step runs up to about this long, so new requests wait little
MAX_ROUNDS = 16
_SAVE_MIN_TOKENS = 16  # shorter KV states are not worth keeping in the prompt cache
DRIVER_IDLE_S = 2.0  # the driver thread ends after this long without requests
_DRIVER_POLL_S = 0.1
_log = logging.getLogger("llamart.scheduler")


@dataclass(eq=False)
class Request:
    """One generation (or logits read) posted to the scheduler."""

    tokens: list[int]
    params: GenerationParams
    seed: int
    key: AdapterKey
    handles: list[tuple[Any, float]]  # backend adapter handles of ``key``, with scales
    logits_only: bool = False
    # filled in by the scheduler
    pieces: deque[bytes] = field(default_factory=deque)
    end: str | None = None  # "eog", "length", "context", "cancelled", "error"
    error: BaseException | None = None
    logits: Any = None
    cached: int = 0  # prompt tokens reused (prefix in the slot, or restored)
    produced: int = 0  # tokens sampled so far
    cancelled: bool = False
    slot: int | None = None
    prompted: bool = False
    order: int = 0
    waker: Callable[[], None] | None = None  # called (by the stepping thread) when it has news


@dataclass
class _Slot:
    tokens: list[int] = field(default_factory=list)  # what its KV holds (mirror of the core)
    key: AdapterKey | None = None
    request: Request | None = None
    last_used: int = 0


class PromptCache:
    """Saved KV states of slots, keyed by adapter set and tokens; LRU within ``max_bytes``."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple[AdapterKey, tuple[int, ...]], bytes] = OrderedDict()
        self.size = 0
        self.hits = self.saves = 0

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, key: AdapterKey, tokens: Sequence[int], data: bytes) -> None:
        k = (key, tuple(tokens))
        if len(data) > self.max_bytes:
            return
        old = self._entries.pop(k, None)
        if old is not None:
            self.size -= len(old)
        self._entries[k] = data
        self.size += len(data)
        self.saves += 1
        while self.size > self.max_bytes:
            _k, dropped = self._entries.popitem(last=False)
            self.size -= len(dropped)

    def best(self, key: AdapterKey,
             tokens: Sequence[int]) -> tuple[tuple[int, ...], bytes, int] | None:
        """The saved state of ``key`` sharing the longest prefix with ``tokens`` (restored, its
        tail past that prefix is dropped), with that prefix's length; None if none shares any."""
        best: tuple[tuple[int, ...], bytes, int] | None = None
        for (k, toks), data in self._entries.items():
            if k != key:
                continue
            n = _common(toks, tokens)
            if n > 0 and (best is None or n > best[2]):
                best = (toks, data, n)
        if best is not None:
            self._entries.move_to_end((key, best[0]))
        return best

    def clear(self) -> None:
        self._entries.clear()
        self.size = 0


def _common(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


class Scheduler:
    """Runs the requests of one loaded model on ``n_slots`` sequences (module docstring)."""

    def __init__(self, backend: ParallelBackend, n_slots: int, lock: EngineLock,
                 prompt_cache_bytes: int, piece: Callable[[int], bytes], lora: bool) -> None:
        self._backend = backend
        self._lock = lock
        self._piece = piece
        self._lora = lora  # the backend applies adapters (else every key is the base's, ())
        self._slots = [_Slot() for _ in range(n_slots)]
        self._waiting: deque[Request] = deque()
        self._clock = itertools.count(1)
        self._rounds = 1
        self.cache = PromptCache(prompt_cache_bytes)
        self.steps = 0
        self._stepped = threading.Condition(lock)  # notified by the driver after each step
        self._driver: threading.Thread | None = None
        self._stopping = False
        self._woken: dict[int, Request] = {}  # id -> request whose waker the step calls
        self._deferred: deque[Callable[[], None]] = deque()  # cancel_soon's ``then``s

    # ---- what callers do

    @property
    def busy(self) -> bool:
        """Whether any request is waiting or running."""
        return bool(self._waiting) or any(s.request is not None for s in self._slots)

    def submit(self, req: Request) -> None:
        with self._lock:
            req.order = next(self._clock)
            self._waiting.append(req)
            self._stepped.notify_all()  # an idle driver starts at once

    def pull(self, req: Request) -> tuple[list[bytes], str | None]:
        """The pieces ``req`` has got (running steps, or waiting for the driver's, until it
        has some or has ended), and why it ended (None while it runs). Raises what ended it in
        error."""
        with self._lock:
            while not req.pieces and req.end is None:
                if self._driver is not None:
                    self._stepped.wait()
                else:
                    self._step()
            return _drain(req, req.end)

    def poll(self, req: Request) -> tuple[list[bytes], str | None] | None:
        """Without the lock (an event loop's thread): what ``req`` has got, or None if nothing
        yet; the driver calls ``req.waker`` when there is more. Raises as :meth:`pull`."""
        end = req.end  # read first: the driver appends a request's pieces before it ends it
        if not req.pieces and end is None:
            return None
        return _drain(req, end)

    def start_driver(self) -> bool:
        """Step in a thread of the scheduler's own while requests run (idempotent); False
        where Python cannot start threads. It ends by itself when idle."""
        with self._lock:
            if self._driver is not None:
                return True
            if self._stopping:
                return False
            try:
                driver = threading.Thread(target=self._drive, name="llamart-scheduler",
                                          daemon=True)
                driver.start()
            except RuntimeError:  # no threads here (Pyodide)
                return False
            self._driver = driver
            return True

    def stop(self) -> None:
        """The model is going: end the driver, and every request with an error."""
        with self._lock:
            self._stopping = True
            for r in self._requests():
                if r.end is None:
                    self._finish(r, "error", BackendError("state", "the model was unloaded"))
            self._wake()

    def cancel(self, req: Request) -> None:
        """Stop ``req`` (its slot is freed at once); a no-op once it has ended."""
        with self._lock:
            req.cancelled = True
            if req.end is None:
                self._finish(req, "cancelled")

    def cancel_soon(self, req: Request, then: Callable[[], None] | None = None) -> None:
        """Stop ``req``, then call ``then`` (under the lock), without waiting for the lock: at
        once if it is free, else the thread stepping now does it before its next step."""
        req.cancelled = True
        if not self._lock.acquire(blocking=False):
            if then is not None:
                self._deferred.append(then)
            return
        try:
            if req.end is None:
                self._finish(req, "cancelled")
            if then is not None:
                then()
            self._wake()
        finally:
            self._lock.release()

    def _run_deferred(self) -> None:
        while self._deferred:
            fn = self._deferred.popleft()
            try:
                fn()
            except Exception:  # noqa: BLE001 - a release that failed must not stop the step
                _log.exception("deferred scheduler call failed")

    def reset(self) -> None:
        """Forget every idle slot's KV and the prompt cache."""
        with self._lock:
            for i, slot in enumerate(self._slots):
                if slot.request is None and slot.tokens:
                    self._backend.slot_clear(i)
                    slot.tokens, slot.key = [], None
            self.cache.clear()

    # ---- the driver

    def _drive(self) -> None:
        lock = self._lock
        while True:
            with lock:
                idle_since = time.monotonic()
                while not self._stopping and not self.busy:
                    self._stepped.wait(_DRIVER_POLL_S)  # also for cancel_soon's ``then``s
                    self._run_deferred()
                    if not self.busy and time.monotonic() - idle_since >= DRIVER_IDLE_S:
                        self._driver = None
                        return
                if self._stopping:
                    self._run_deferred()
                    self._driver = None
                    return
                try:
                    self._step()
                except BaseException as e:  # noqa: BLE001 - ends the requests, never the thread
                    _log.exception("scheduler step failed")
                    for s in self._slots:
                        if s.request is not None:
                            self._finish(s.request, "error", e)
                self._wake()
            lock.give_way()

    def _wake(self) -> None:
        """Tell the callers waiting for a step (sync pullers, and the wakers of async ones)."""
        self._stepped.notify_all()
        woken, self._woken = self._woken, {}
        for r in woken.values():
            if r.waker is not None:
                try:
                    r.waker()
                except RuntimeError:  # its event loop is closed: nobody is waiting
                    r.waker = None

    # ---- the step

    def _requests(self) -> list[Request]:
        """Every request waiting or running."""
        return [*self._waiting, *(s.request for s in self._slots if s.request is not None)]

    def _finish(self, req: Request, end: str, error: BaseException | None = None) -> None:
        if req in self._waiting:
            self._waiting.remove(req)
        req.end, req.error = end, error
        if req.waker is not None:
            self._woken[id(req)] = req
        if req.slot is not None:
            slot = self._slots[req.slot]
            slot.request = None
            slot.last_used = next(self._clock)
            try:
                slot.tokens = self._backend.slot_tokens(req.slot)
            except BackendError:
                slot.tokens = []
            req.slot = None

    def _admit(self) -> None:
        """Waiting requests into free slots, in arrival order."""
        while self._waiting:
            req = self._waiting[0]
            free = [i for i, s in enumerate(self._slots) if s.request is None]
            if not free:
                return
            self._waiting.popleft()
            best = max(free, key=lambda i: (
                _common(self._slots[i].tokens, req.tokens) if self._slots[i].key == req.key else 0,
                -self._slots[i].last_used))
            slot = self._slots[best]
            slot.request, req.slot = req, best

    def _save(self, i: int) -> None:
        """Keep slot i's KV in the prompt cache (before it is overwritten or evicted)."""
        slot = self._slots[i]
        if slot.key is None or len(slot.tokens) < _SAVE_MIN_TOKENS or self.cache.max_bytes <= 0:
            return
        try:
            self.cache.put(slot.key, slot.tokens, self._backend.slot_state_save(i))
        except BackendError:
            pass

    def _prompt(self, req: Request) -> None:
        """Set up ``req`` in its slot under its adapter set."""
        assert req.slot is not None
        if self._lora:  # else every key is the base's, the backend's only set
            self._backend.slot_adapters(req.slot, req.handles)
        slot = self._slots[req.slot]
        reuse = _common(slot.tokens, req.tokens) if slot.key == req.key else 0
        if slot.tokens and reuse < len(slot.tokens):
            self._save(req.slot)
        saved = self.cache.best(req.key, req.tokens) if self.cache.max_bytes > 0 else None
        if saved is not None and saved[2] > reuse:
            try:
                self._backend.slot_state_load(req.slot, saved[0], saved[1])
                self.cache.hits += 1
            except BackendError:
                pass
        req.cached = self._backend.slot_prompt(req.slot, req.tokens)
        slot.key = req.key
        slot.tokens = list(req.tokens[:req.cached])
        if not req.logits_only:
            self._backend.slot_sampler_init(req.slot, req.params, req.seed, req.tokens)
        req.prompted = True

    def _evict_idle(self) -> bool:
        """Free the least recently used idle slot's KV (saved first); False if none holds any."""
        idle = [i for i, s in enumerate(self._slots) if s.request is None and s.tokens]
        if not idle:
            return False
        i = min(idle, key=lambda j: self._slots[j].last_used)
        self._save(i)
        self._backend.slot_clear(i)
        self._slots[i].tokens, self._slots[i].key = [], None
        return True

    def _step(self) -> None:
        purged = False
        for r in self._requests():
            if r.cancelled and r.end is None:  # cancel_soon()
                self._finish(r, "cancelled")
                purged = True
        self._run_deferred()
        self._admit()
        running = [s.request for s in self._slots if s.request is not None]
        if not running and (purged or self._driver is not None):
            return  # what was to run has been cancelled
        if not running:
            raise RuntimeError("the scheduler has nothing to run")  # pull() only on live requests
        ready: list[Request] = []
        for r in running:
            if not r.prompted:
                try:
                    self._prompt(r)
                except BackendError as e:
                    self._finish(r, "error", e)
                    continue
            ready.append(r)
        if not ready:
            return
        self._run(ready)

    def _run(self, ready: list[Request]) -> None:
        # several decode rounds per step, up to ~STEP_BUDGET_S at the last pace: one crossing
        # for several tokens; one round when a request is new (its first token goes out now)
        # or one waits for a slot that is free (after _admit, only one held back by a full KV
        # cache); a request waiting for a busy slot gains nothing from short steps
        free = any(s.request is None for s in self._slots)
        waiting = (bool(self._waiting) and free) or any(r.produced == 0 for r in ready)
        rounds = 1 if waiting or any(r.logits_only for r in ready) else self._rounds
        while ready:
            slots = [r.slot for r in ready]
            budgets = [0 if r.logits_only else
                       max(0, min(rounds, r.params.max_tokens - r.produced)) for r in ready]
            started = time.perf_counter()
            try:
                results, full, reason = self._backend.step(slots, budgets, rounds)  # type: ignore[arg-type]
            except BackendError as e:
                for r in ready:
                    self._finish(r, "error", e)
                return
            if full:
                if self._evict_idle():
                    continue
                if len(ready) == 1:
                    self._finish(ready[0], "context")
                    return
                ready = sorted(ready, key=lambda r: r.order)[:-1]  # the newest sits out
                continue
            self.steps += 1
            elapsed = time.perf_counter() - started
            made = max((len(t) for t, _ in results), default=0)
            if made and not waiting:
                pace = STEP_BUDGET_S * made / max(elapsed, 1e-6)
                self._rounds = max(1, min(MAX_ROUNDS, int(pace)))
            for r, (toks, status) in zip(ready, results, strict=False):
                self._deliver(r, toks, status, reason)
            return

    def _deliver(self, r: Request, toks: list[int], status: int, reason: str) -> None:
        assert r.slot is not None
        if r.logits_only:
            try:
                r.logits = self._backend.slot_logits(r.slot)
            except BackendError:
                return  # its prompt is longer than one batch: not evaluated yet
            self._finish(r, "length")
            return
        for t in toks:
            r.pieces.append(self._piece(t))
        r.produced += len(toks)
        if toks and r.waker is not None:
            self._woken[id(r)] = r
        if status == _EOG:
            self._finish(r, "eog")
        elif status == _CONTEXT:
            self._finish(r, "context")
        elif status != _OK:
            self._finish(r, "error", BackendError(kind(status), reason or "sampling failed"))
        elif r.produced >= r.params.max_tokens:
            self._finish(r, "length")


def _drain(req: Request, end: str | None) -> tuple[list[bytes], str | None]:
    """The pieces ``req`` has got (taken one by one: the driver may append meanwhile) and
    ``end``, read before; what ended it in error is raised when no piece is left to give."""
    pieces = []
    while req.pieces:
        pieces.append(req.pieces.popleft())
    if end == "error" and req.error is not None and not pieces:
        raise req.error
    return pieces, end
