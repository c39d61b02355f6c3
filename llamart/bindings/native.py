"""The native backend: the C API client over cffi and libllamart, in this process."""

from __future__ import annotations

from collections.abc import Callable

from .client import CApiClient, string_scanner
from .ffi_cffi import CffiFfi


def gguf_string_scan() -> Callable[[memoryview, int, int, bool], int]:
    """lm_gguf_scan_strings over bytes Python holds, without copying them (ImportError when the
    library is missing, of another version, or older than the function)."""
    return string_scanner(CffiFfi())


class NativeBackend(CApiClient):
    """llama.cpp in this process, through cffi."""

    name = "native"

    def __init__(self) -> None:
        ffi = CffiFfi()
        super().__init__(ffi, str(ffi.path))
