"""Backends: one llama.cpp build each, behind the small :class:`Backend` protocol."""

from .base import Backend, BackendError, Capabilities, ErrorKind, ModelInfo

__all__ = ["Backend", "BackendError", "Capabilities", "ErrorKind", "ModelInfo"]
