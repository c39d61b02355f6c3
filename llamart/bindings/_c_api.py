"""Facts about our C API (backends/llamart.h): its codes, capability bits, version check and log.

The numbers are the header's own (``_c_constants``, generated from it); this module only says
what each means to Python.
"""

from __future__ import annotations

import logging
from typing import Any

from .. import _version
from . import _c_constants as C
from .base import ErrorKind, StepEnd

log = logging.getLogger("llamart.llama_cpp")

# LM_ERR_* return codes -> why the call failed
CODES = {C.LM_ERR_ARG: ErrorKind.ARG, C.LM_ERR_CONTEXT: ErrorKind.CONTEXT,
         C.LM_ERR_DECODE: ErrorKind.DECODE, C.LM_ERR_ALLOC: ErrorKind.ALLOC,
         C.LM_ERR_BUFFER: ErrorKind.ARG, C.LM_ERR_STATE: ErrorKind.STATE,
         C.LM_ERR_UNSUPPORTED: ErrorKind.UNSUPPORTED, C.LM_ERR_GRAMMAR: ErrorKind.GRAMMAR}
# lm_generate's *status -> why the step ended (LM_ERR_DECODE is an error instead)
STEP_ENDS = {C.LM_OK: StepEnd.FULL, C.LM_EOG: StepEnd.EOG, C.LM_CANCELLED: StepEnd.CANCELLED,
             C.LM_ERR_CONTEXT: StepEnd.CONTEXT}

# lm_capabilities() bits
CAP_LORA, CAP_THREADS, CAP_MMAP = C.LM_CAP_LORA, C.LM_CAP_THREADS, C.LM_CAP_MMAP
CAP_EMBEDDINGS, CAP_GRAMMAR, CAP_JSON_SCHEMA = (C.LM_CAP_EMBEDDINGS, C.LM_CAP_GRAMMAR,
                                                C.LM_CAP_JSON_SCHEMA)
# lm_embed pooling types by name, from LM_POOLING_<NAME>: None is the model's own (MODEL; mean
# when it names none), the others "mean", "cls", "last" in the header's order
POOLING: dict[str | None, int] = {
    (None if name == "LM_POOLING_MODEL" else name.removeprefix("LM_POOLING_").lower()): value
    for name, value in vars(C).items() if name.startswith("LM_POOLING_")}
POOLING_NAMES: tuple[str, ...] = tuple(name for name in POOLING if name is not None)

# why capabilities.lora is False on the WebAssembly module (always compiled without LoRA)
LORA_REASON = (
    "LoRA adapters are not applied on the WebAssembly backend in this release; "
    "use the native backend."
)


def lora_reason(backend: str, where: str) -> str:
    """Why ``capabilities.lora`` is False for a library without LM_CAP_LORA: the WebAssembly
    module never has it (:data:`LORA_REASON`); any other build was configured without it
    (``llamart_core(... LORA OFF)`` in CMake)."""
    if backend == "wasm":
        return LORA_REASON
    return (f"LoRA adapters are not applied: {where} was built without LoRA "
            f"(llamart_core(... LORA OFF)); rebuild it with LoRA on to use adapters.")

# lm_log_take's level digits -> logging levels
LEVELS = {"0": logging.DEBUG, "1": logging.INFO, "2": logging.WARNING, "3": logging.ERROR}


def kind(code: int, default: str = ErrorKind.DECODE) -> str:
    """The :class:`ErrorKind` of an LM_ERR_* code."""
    return CODES.get(code, default)


def check_library(ffi: Any, where: str) -> None:
    """ImportError unless the C library behind an FFI adapter (see client.Ffi) was built from
    this package's version: one release of core/ and this Python code."""
    want, want_abi = _version.__version__, _version.C_ABI_VERSION
    rebuild = ("rebuild it (`pip install .` natively, `python -m wasm.build` for WebAssembly) "
               "or point LLAMART_LIB_DIR / LLAMART_WASM_DIR at a matching build")
    try:
        version, abi = ffi.string(ffi.lib.lm_version()), int(ffi.lib.lm_abi_version())
    except AttributeError as exc:
        raise ImportError(f"{where} predates llamart 0.2.0 (it has no lm_abi_version) but this "
                          f"llamart package is {want}: {rebuild}") from exc
    if abi != want_abi or version != want:
        raise ImportError(f"{where} is llamart {version} (C ABI {abi}) but this llamart package "
                          f"is {want} (C ABI {want_abi}): {rebuild}")


def c_log_level() -> int:
    """The C-side threshold (0 debug .. 3 error) matching the llamart.llama_cpp logger."""
    level = log.getEffectiveLevel()
    if level <= logging.DEBUG:
        return 0
    if level <= logging.INFO:
        return 1
    return 2 if level <= logging.WARNING else 3


def forward_log(text: str) -> None:
    """Send lines drained with lm_log_take ("L\\ttext\\n") to the llamart.llama_cpp logger."""
    for line in text.splitlines():
        level, _, msg = line.partition("\t")
        log.log(LEVELS.get(level, logging.INFO), "%s", msg)
