"""The llamart C library's GGUF string walk (``lm_gguf_scan_strings``) for this platform.

The one place that asks the backends for it: callers pass it to :mod:`llamart.gguf` as
``scan=``, so the GGUF parser itself imports no backend.
"""

from __future__ import annotations

import sys

from .reader import StringScan

__all__ = ["c_string_scan"]

_found: list[StringScan | None] = []


def c_string_scan() -> StringScan | None:
    """``lm_gguf_scan_strings`` of libllamart natively, or of the WebAssembly module in Pyodide
    once it is registered; None when there is no such library (e.g. ``llamart lora inspect``
    without a build), and big string arrays are then walked in Python."""
    if not _found:
        try:
            if sys.platform == "emscripten":
                from ..bindings.wasm import gguf_string_scan
            else:
                from ..bindings.native import gguf_string_scan
            _found.append(gguf_string_scan())
        except (ImportError, OSError):
            if sys.platform != "emscripten":
                _found.append(None)  # natively: asked once (in Pyodide the module may come later)
            return None
    return _found[0]
