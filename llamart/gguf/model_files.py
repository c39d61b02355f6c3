"""Checks of model and adapter files before llama.cpp reads them: the Engine's one use of the
GGUF reader. Failures are ModelLoadError / AdapterError naming the file and the reason."""

from __future__ import annotations

import errno
import os
import struct
from typing import Any

from ..errors import AdapterError, LlamartError, ModelLoadError
from .c_scan import c_string_scan
from .header import GGUFError
from .rules import validate_adapter, validate_model
from .summary import adapter_summary as _summary

__all__ = ["adapter_summary", "check_adapter", "check_file", "check_model", "file_metadata"]


def check_file(path: str) -> None:
    """FileNotFoundError / IsADirectoryError for a path that is not a file."""
    if not os.path.exists(path):
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", path)
    if os.path.isdir(path):
        raise IsADirectoryError(errno.EISDIR, "Is a directory, not a GGUF file", path)


def check_model(path: str, *, vocab_only: bool = False) -> Any:
    """The GGUF header of a loadable model (with ``vocab_only``, tensors are optional)."""
    check_file(path)
    return _checked(ModelLoadError, path, lambda: validate_model(
        path, allow_no_tensors=vocab_only, scan=c_string_scan()))


def check_adapter(path: str, base: Any, *, applicable: bool = False) -> Any:
    """The GGUF header of a LoRA adapter, checked against ``base`` (a model header) if given;
    with ``applicable``, also refused when llamart must not apply it (aLoRA)."""
    check_file(path)
    header = _checked(AdapterError, path, lambda: validate_adapter(path, base))
    if applicable:
        from ..lora.applicable import check_applicable

        check_applicable(header)
    return header


def adapter_summary(header: Any) -> dict[str, Any]:
    """alpha, rank, targets, task_name and architecture of an adapter header."""
    return dict(_summary(header))


def file_metadata(header: Any) -> dict[str, str]:
    """A header's metadata as text (arrays as ``[N items]``)."""
    return {k: f"[{len(v)} items]" if isinstance(v, list) else str(v)
            for k, v in header.kv.items()}


def _checked(cls: type[LlamartError], path: str, check: Any) -> Any:
    try:
        return check()
    except GGUFError as e:
        raise cls(f"{path}: {e.reason}", path=path, reason=e.reason) from e
    except (ValueError, OverflowError, struct.error, EOFError) as e:
        reason = f"unreadable GGUF header ({e})"
        raise cls(f"{path}: {reason}", path=path, reason=reason) from e
