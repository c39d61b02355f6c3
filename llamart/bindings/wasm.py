"""The WebAssembly backend: the C API client over the emscripten module, inside Pyodide.

How the module is built, loaded and registered as ``llamart_wasm``: ffi_emscripten.py and
wasm/README.md. Single-threaded, no mmap, and no LoRA (the module is compiled without it:
``capabilities.lora`` is False with :data:`LORA_REASON`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._c_api import LORA_REASON
from .client import CApiClient, string_scanner
from .ffi_emscripten import EmscriptenFfi, wasm_module

__all__ = ["LORA_REASON", "WasmBackend", "gguf_string_scan", "wasm_module"]


def gguf_string_scan() -> Callable[[memoryview, int, int, bool], int]:
    """lm_gguf_scan_strings in the registered module (ImportError when there is none, it is of
    another version, or older than the function): the bytes are copied into its memory."""
    return string_scanner(EmscriptenFfi())


class WasmBackend(CApiClient):
    """llama.cpp as a WebAssembly module beside Pyodide, through Pyodide's JS FFI."""

    name = "wasm"

    def __init__(self, module: Any | None = None) -> None:
        super().__init__(EmscriptenFfi(module), "the llamart WebAssembly module")
