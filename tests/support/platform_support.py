"""What the Python running the tests can do (CPython natively, Pyodide in Node or a browser)."""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Coroutine
from typing import Any

import pytest


@functools.cache
def threads_available() -> bool:
    """Whether this Python can start threads (Pyodide cannot); probed once."""
    try:
        t = threading.Thread(target=lambda: None)
        t.start()
        t.join()
        return True
    except RuntimeError:
        return False


def run_coroutine(coro: Coroutine[Any, Any, Any]) -> Any:
    """asyncio.run where Python has threads; in Pyodide (whose event loop cannot block) step
    the coroutine by hand: the engine's thread-less async path only yields bare."""
    if threads_available():
        return asyncio.run(coro)
    try:
        while True:
            coro.send(None)
    except StopIteration as stop:
        return stop.value


needs_threads = pytest.mark.skipif(not threads_available(),
                                   reason="this Python cannot start threads (Pyodide)")
