"""The FFI adapter for CPython: cffi (ABI mode) over libllamart, loaded once per process.

Memory is cffi's: arguments are ``ffi.new`` objects kept alive by their scope (freed by Python's
GC), results are read straight from the library's memory.
"""

from __future__ import annotations

import array
import contextlib
import importlib.util
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ._cdefs import cdef_source, lib_dir
from ._ffi_build import MODULE, digest

_lock = threading.Lock()
_loaded: tuple[Any, Any, Path] | None = None


def library() -> tuple[Any, Any, Path]:
    """cffi's FFI, libllamart and its path, loaded once per process (ImportError if absent)."""
    global _loaded
    with _lock:
        if _loaded is None:
            folder = lib_dir()
            name = "libllamart.dylib" if sys.platform == "darwin" else "libllamart.so"
            path = folder / name
            if not path.exists():
                raise ImportError(
                    f"llamart's native library is missing ({path}); install llamart with "
                    "'pip install .' or set LLAMART_LIB_DIR to a folder holding libllamart"
                )
            ffi = _declarations(folder)
            _loaded = (ffi, ffi.dlopen(str(path)), path)
        return _loaded


def _declarations(folder: Path) -> Any:
    """The FFI for llamart.h: the module the build wrote beside the library when it matches
    the header (declarations parsed once, at build time), else parsed now."""
    cdef = cdef_source()
    prebuilt = folder / f"{MODULE}.py"
    if prebuilt.exists():
        spec = importlib.util.spec_from_file_location(f"llamart._lib.{MODULE}", prebuilt)
        if spec is not None and spec.loader is not None:
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            if getattr(module, "CDEF_SHA256", None) == digest(cdef):
                return module.ffi
    import cffi

    ffi = cffi.FFI()
    ffi.cdef(cdef)
    return ffi


class _Scope:
    """Argument memory: cffi objects held until close()."""

    def __init__(self, ffi: Any) -> None:
        self._ffi = ffi
        self._keep: list[Any] = []

    def _new(self, ctype: str, init: Any) -> Any:
        obj = self._ffi.new(ctype, init)
        self._keep.append(obj)
        return obj

    def text(self, data: bytes) -> Any:
        return self._new("char[]", data)

    def view(self, data: memoryview) -> Any:
        obj = self._ffi.from_buffer("uint8_t[]", data)  # no copy
        self._keep.append(obj)
        return obj

    def i32s(self, values: Sequence[int]) -> Any:
        return self._new("int32_t[]", list(values) or 1)

    def f32s(self, values: Sequence[float]) -> Any:
        return self._new("float[]", list(values) or 1)

    def pointers(self, ctype: str, values: Sequence[Any]) -> Any:
        return self._new(f"{ctype}[]", list(values) or 1)

    def out(self, nbytes: int) -> Any:
        return self._new("char[]", max(1, nbytes))

    def out_i32s(self, n: int) -> Any:
        return self._new("int32_t[]", max(1, n))

    def out_f32s(self, n: int) -> Any:
        return self._new("float[]", max(1, n))

    def close(self) -> None:
        self._keep.clear()


class CffiFfi:
    """The :class:`~llamart.bindings.client.Ffi` of the native library."""

    def __init__(self) -> None:
        self._ffi, self.lib, self.path = library()
        self.NULL = self._ffi.NULL

    @contextlib.contextmanager
    def scope(self) -> Iterator[_Scope]:
        s = _Scope(self._ffi)
        try:
            yield s
        finally:
            s.close()

    def arena(self) -> _Scope:
        return _Scope(self._ffi)

    def ptr(self, raw: Any) -> Any | None:
        return None if raw == self._ffi.NULL else raw

    def string(self, ptr: Any) -> str:
        if ptr == self._ffi.NULL:
            return ""
        return self._ffi.string(ptr).decode("utf-8", "replace")

    def i64(self, value: int) -> tuple[int, ...]:
        return (value,)

    def read(self, ptr: Any, nbytes: int) -> bytes:
        return self._ffi.unpack(ptr, nbytes) if nbytes > 0 else b""

    def read_i32s(self, ptr: Any, n: int) -> list[int]:
        return self._ffi.unpack(ptr, n) if n > 0 else []

    def read_f32s(self, ptr: Any, n: int) -> array.array:
        out = array.array("f")
        out.frombytes(self._ffi.buffer(ptr, 4 * n))
        return out

    def get_i32(self, ptr: Any) -> int:
        return int(ptr[0])

    def set_i32(self, ptr: Any, value: int) -> None:
        ptr[0] = value

    def staged(self, path: str) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()  # the library reads this process's files directly
