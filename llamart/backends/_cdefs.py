"""Locate the native library; read the C declarations from our one header (llamart.h)."""

from __future__ import annotations

import os
import re
from pathlib import Path

_BEGIN = "/* LLAMART_CDEF_BEGIN */"
_END = "/* LLAMART_CDEF_END */"
_PACKAGE_LIB = Path(__file__).resolve().parent.parent / "_lib"
_SOURCE_HEADER = Path(__file__).resolve().parents[2] / "core" / "llamart.h"


def lib_dir() -> Path:
    """Folder holding libllamart: LLAMART_LIB_DIR, else llamart/_lib beside this package, else
    the installed distribution's (a checkout on sys.path uses what `pip install .` built).
    """
    override = os.environ.get("LLAMART_LIB_DIR")
    if override:
        return Path(override)
    if (_PACKAGE_LIB / "llamart.h").exists():
        return _PACKAGE_LIB
    try:
        from importlib.metadata import PackageNotFoundError, distribution

        located = Path(str(distribution("llamart").locate_file("llamart/_lib")))
        if (located / "llamart.h").exists():
            return located
    except (PackageNotFoundError, ImportError):
        pass
    return _PACKAGE_LIB


def header_path() -> Path:
    """The installed copy of llamart.h, or the source tree's when running from a checkout."""
    installed = lib_dir() / "llamart.h"
    return installed if installed.exists() else _SOURCE_HEADER


def cdef_source(header: Path | None = None) -> str:
    """The declarations between the CDEF markers, with the export macro removed."""
    text = (header or header_path()).read_text(encoding="utf-8")
    start, end = text.index(_BEGIN) + len(_BEGIN), text.index(_END)
    body = re.sub(r"\bLM_API\s+", "", text[start:end])
    return body
