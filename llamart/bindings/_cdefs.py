"""Locate the native library; read the C declarations and constants from our one header
(llamart.h).

The header's enum constants (status codes, capability bits, pooling types) are also written
into ``_c_constants.py`` by ``python -m llamart.bindings._cdefs`` (generated, never edited: the
WebAssembly runtime has no header to read); tests/test_c_api.py checks it against the header
and the library.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

_BEGIN = "/* LLAMART_CDEF_BEGIN */"
_END = "/* LLAMART_CDEF_END */"
_PACKAGE_LIB = Path(__file__).resolve().parent.parent / "_lib"
_SOURCE_HEADER = Path(__file__).resolve().parents[2] / "backends" / "llamart.h"
_CONSTANTS_MODULE = Path(__file__).resolve().parent / "_c_constants.py"
_ENUMERATOR = re.compile(r"\b(LM_[A-Z0-9_]+)\s*=\s*(-?\d+)")


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


def header_constants(header: Path | None = None) -> dict[str, int]:
    """The ``LM_*`` enum constants the header declares (between the CDEF markers), in order."""
    body = cdef_source(header)
    return {name: int(value) for name, value in _ENUMERATOR.findall(body)}


def constants_source(header: Path | None = None) -> str:
    """The text of ``_c_constants.py`` for ``header`` (the source tree's by default)."""
    lines = ['"""The C API\'s enum constants, generated from backends/llamart.h by',
             "``python -m llamart.bindings._cdefs``: do not edit (tests/test_c_api.py checks it).",
             '"""', ""]
    lines += [f"{name} = {value}" for name, value in
              header_constants(header or _SOURCE_HEADER).items()]
    return "\n".join(lines) + "\n"


def main() -> int:
    """Regenerate ``_c_constants.py`` from backends/llamart.h."""
    _CONSTANTS_MODULE.write_text(constants_source(_SOURCE_HEADER), encoding="utf-8")
    print(f"wrote {_CONSTANTS_MODULE}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
