"""The Engine's lock: re-entrant, and fair to a thread that waits for it.

A parallel engine's stepping thread (:class:`~llamart.engine.scheduler.Scheduler`'s driver)
takes the lock for one step after another. A plain lock would let it take the lock again before a
woken waiter runs (the waiter needs a core; the releasing thread already has one), so a call from
another thread (start a generation, tokenize, embed) could wait for many steps. The driver calls
:meth:`EngineLock.give_way` between steps: it lets every thread already waiting go first.
"""

from __future__ import annotations

import threading
import time
from typing import Any

__all__ = ["EngineLock"]

GIVE_WAY_MAX_S = 0.05  # a waiter that has not taken the lock by then waits like anyone else


class EngineLock:
    """A ``threading.RLock`` that counts the threads waiting for it (usable by a Condition)."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._count = threading.Lock()
        self._waiting = 0

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        if self._lock.acquire(False):
            return True
        if not blocking:
            return False
        with self._count:
            self._waiting += 1
        try:
            return self._lock.acquire(True, timeout)
        finally:
            with self._count:
                self._waiting -= 1

    def release(self) -> None:
        self._lock.release()

    def locked(self) -> bool:
        return bool(self._lock.locked()) if hasattr(self._lock, "locked") else False

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    def give_way(self) -> None:
        """Without the lock held: wait (briefly) until the threads waiting for it have had it."""
        if not self._waiting:
            return
        deadline = time.perf_counter() + GIVE_WAY_MAX_S
        while self._waiting and time.perf_counter() < deadline:
            time.sleep(0.0002)

    # what threading.Condition uses of a re-entrant lock
    def _release_save(self) -> Any:
        return self._lock._release_save()  # type: ignore[attr-defined]

    def _acquire_restore(self, state: Any) -> None:
        with self._count:
            self._waiting += 1
        try:
            self._lock._acquire_restore(state)  # type: ignore[attr-defined]
        finally:
            with self._count:
                self._waiting -= 1

    def _is_owned(self) -> bool:
        return bool(self._lock._is_owned())  # type: ignore[attr-defined]
