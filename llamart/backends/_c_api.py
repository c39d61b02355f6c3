"""Facts about our C API (backends/llamart.h) shared by both backends that call it."""

from __future__ import annotations

import logging

from .base import ErrorKind, StepEnd

log = logging.getLogger("llamart.llama_cpp")

# LM_ERR_* return codes -> why the call failed
CODES = {-1: ErrorKind.ARG, -2: ErrorKind.CONTEXT, -3: ErrorKind.DECODE, -4: ErrorKind.ALLOC,
         -6: ErrorKind.TEMPLATE, -7: ErrorKind.STATE}
# lm_generate's *status -> why the step ended (LM_ERR_DECODE, -3, is an error instead)
STEP_ENDS = {0: StepEnd.FULL, 1: StepEnd.EOG, 2: StepEnd.CANCELLED, -2: StepEnd.CONTEXT}

# lm_log_take's level digits -> logging levels
LEVELS = {"0": logging.DEBUG, "1": logging.INFO, "2": logging.WARNING, "3": logging.ERROR}


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
