"""The FFI adapter for Pyodide: the emscripten module of the llamart core, through Pyodide's JS FFI.

The module (``build-wasm/wasm/llamart_wasm.js`` + ``.wasm``) is loaded from the installed
Pyodide wheel (pyodide_loader.py) or by ``wasm/llamart_pyodide.js``, and registered as the
Python module ``llamart_wasm``. Its exports
are ``_lm_*``; arguments are copied into its linear memory (``lm_malloc``) and results read
back from ``HEAPU8``/``HEAP32`` (re-read on every access: the heap view changes when memory
grows). Pointers are wasm32 offsets.

The module has its own file system: a model path must exist there. Paths that exist only in
Pyodide's FS are shared with it for the load (no copy for NODEFS, WORKERFS, MEMFS and IDBFS
files), else copied in.
"""

from __future__ import annotations

import array
import contextlib
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from typing import Any

from .base import BackendError, ErrorKind

_log = logging.getLogger("llamart.wasm")
_COPY_CHUNK = 1 << 20


def wasm_module() -> Any:
    """The emscripten module registered as ``llamart_wasm`` (ImportError saying how if not).

    Inside Pyodide with the Pyodide wheel installed, the first call loads it from the package
    (pyodide_loader.py).
    """
    from . import pyodide_loader

    if sys.platform == "emscripten" and pyodide_loader.bundled():
        return pyodide_loader.ensure_module()
    try:
        import llamart_wasm  # type: ignore[import-not-found]
    except ImportError as exc:
        where = "in Pyodide" if sys.platform == "emscripten" else "outside Pyodide"
        raise ImportError(
            f"the llamart WebAssembly module is not available ({where}): build it "
            "(see wasm/README.md), load it with wasm/llamart_pyodide.js "
            "(LlamartPyodide.load(pyodide, {glue, wasm})) so that `import llamart_wasm` works, "
            "then create the engine; or install the llamart Pyodide wheel (python -m wasm.wheel), "
            "which loads it itself"
        ) from exc
    return llamart_wasm


def _u32(ptr: Any) -> int:
    """A wasm32 pointer as a non-negative int (JS may hand back pointers above 2 GiB signed)."""
    return int(ptr) & 0xFFFFFFFF


class _Exports:
    """The module's ``_lm_*`` exports as ``lm_*`` attributes (AttributeError when missing)."""

    def __init__(self, module: Any) -> None:
        self._m = module

    def __getattr__(self, name: str) -> Any:
        fn = getattr(self._m, "_" + name)
        setattr(self, name, fn)
        return fn


class _Scope:
    """Argument memory in the module's heap, freed by close()."""

    def __init__(self, ffi: EmscriptenFfi) -> None:
        self._ffi = ffi
        self._ptrs: list[int] = []

    def out(self, nbytes: int) -> int:
        ptr = _u32(self._ffi.lib.lm_malloc(max(1, nbytes)))
        if ptr == 0:
            raise BackendError(ErrorKind.ALLOC, f"out of WebAssembly memory ({nbytes} bytes)")
        self._ptrs.append(ptr)
        return ptr

    def _put(self, data: bytes | memoryview) -> int:
        ptr = self.out(len(data))
        self._ffi.write(ptr, data)
        return ptr

    def text(self, data: bytes) -> int:
        return self._put(data + b"\0")

    def view(self, data: memoryview) -> int:
        return self._put(data)  # the module cannot see Python's memory: one copy

    def i32s(self, values: Sequence[int]) -> int:
        return self._put(array.array("i", values).tobytes())

    def f32s(self, values: Sequence[float]) -> int:
        return self._put(array.array("f", values).tobytes())

    def pointers(self, ctype: str, values: Sequence[Any]) -> int:
        return self._put(array.array("I", [_u32(v) for v in values]).tobytes())

    def out_i32s(self, n: int) -> int:
        return self._put(bytes(4 * max(1, n)))

    def out_f32s(self, n: int) -> int:
        return self.out(4 * max(1, n))  # the callee writes every float

    def close(self) -> None:
        ptrs, self._ptrs = self._ptrs, []
        for ptr in ptrs:
            self._ffi.lib.lm_free(ptr)


class EmscriptenFfi:
    """The :class:`~llamart.bindings.client.Ffi` of the WebAssembly module."""

    NULL = 0

    def __init__(self, module: Any | None = None) -> None:
        self.module = module if module is not None else wasm_module()
        self.lib = _Exports(self.module)

    @contextlib.contextmanager
    def scope(self) -> Iterator[_Scope]:
        s = _Scope(self)
        try:
            yield s
        finally:
            s.close()

    def arena(self) -> _Scope:
        return _Scope(self)

    def ptr(self, raw: Any) -> int | None:
        return _u32(raw) or None

    def string(self, ptr: Any) -> str:
        p = _u32(ptr)
        return str(self.module.UTF8ToString(p)) if p else ""

    def i64(self, value: int) -> tuple[int, ...]:
        """An int64 as the (low, high) signed int32 pair emcc's legalized exports take."""
        value &= 0xFFFFFFFFFFFFFFFF
        lo, hi = value & 0xFFFFFFFF, value >> 32
        return (lo - (1 << 32) if lo >= 1 << 31 else lo), (hi - (1 << 32) if hi >= 1 << 31 else hi)

    def write(self, ptr: int, data: bytes | memoryview) -> None:
        if data:
            self.module.HEAPU8.subarray(ptr, ptr + len(data)).assign(data)

    def read(self, ptr: int, nbytes: int) -> bytes:
        if nbytes <= 0:
            return b""
        return bytes(self.module.HEAPU8.subarray(ptr, ptr + nbytes).to_bytes())

    def read_i32s(self, ptr: int, n: int) -> list[int]:
        return array.array("i", self.read(ptr, 4 * n)).tolist()

    def read_f32s(self, ptr: int, n: int) -> array.array:
        out = array.array("f")
        out.frombytes(self.read(ptr, 4 * n))
        return out

    def get_i32(self, ptr: int) -> int:
        return int(self.module.HEAP32[ptr >> 2])  # one typed-array read, no copy

    def set_i32(self, ptr: int, value: int) -> None:
        self.write(ptr, (value & 0xFFFFFFFF).to_bytes(4, "little"))

    @contextlib.contextmanager
    def staged(self, path: str) -> Iterator[None]:
        """Make ``path`` readable by the module for the duration of a load.

        A file of Pyodide's FS alone is shared without a copy where possible (a NODEFS or
        WORKERFS mount is mounted again, a MEMFS/IDBFS file's contents are shared:
        pyodide_loader.share); else it is copied. Either is undone right after the load
        (llama.cpp reads the whole file then: mmap is off).
        """
        fs = self.module.FS
        if fs.analyzePath(path).exists or not os.path.isfile(path):
            yield  # shared file, or missing: llama.cpp reports that
            return
        from . import pyodide_loader

        undo = pyodide_loader.share(self.module, path)
        if undo is not None:  # the same file in both file systems, nothing copied
            try:
                yield
            finally:
                undo()
            return
        _log.info("copying %s into the WebAssembly module's file system for loading", path)
        parts = [p for p in os.path.dirname(path).split("/") if p]
        for i in range(len(parts)):
            sub = "/" + "/".join(parts[: i + 1])
            if not fs.analyzePath(sub).exists:
                fs.mkdir(sub)
        from pyodide.ffi import to_js  # type: ignore[import-not-found]

        try:
            stream = fs.open(path, "w")
            try:
                with open(path, "rb") as src:
                    while chunk := src.read(_COPY_CHUNK):
                        fs.write(stream, to_js(chunk), 0, len(chunk))
            finally:
                fs.close(stream)
            yield
        finally:
            # only a copy that exists is removed: when fs.open failed there is none, and an
            # ENOENT from unlink would hide the real error
            if fs.analyzePath(path).exists:
                fs.unlink(path)
