"""Build step: write cffi's out-of-line ABI module for llamart.h (``_llamart_cffi.py``).

With it, each process loads the C declarations already parsed instead of running pycparser
over them (~40 ms per ``Engine()``). CMake runs ``python _ffi_build.py HEADER OUT_DIR`` beside
libllamart; without cffi it writes nothing and the native backend parses at run time.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

MODULE = "_llamart_cffi"


def digest(cdef: str) -> str:
    """Fingerprint of the declarations a prebuilt module was made from."""
    return hashlib.sha256(cdef.encode("utf-8")).hexdigest()


def emit(cdef: str, out_dir: Path) -> Path:
    import cffi

    ffi = cffi.FFI()
    ffi.cdef(cdef)
    ffi.set_source(MODULE, None)  # None: ABI mode, no C compiler involved
    path = out_dir / f"{MODULE}.py"
    tmp = path.with_suffix(".tmp")
    ffi.emit_python_code(str(tmp))
    with open(tmp, "a", encoding="utf-8") as f:
        f.write(f'\nCDEF_SHA256 = "{digest(cdef)}"\n')
    tmp.replace(path)
    return path


def main(argv: list[str]) -> int:
    header, out_dir = Path(argv[0]), Path(argv[1])
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _cdefs import cdef_source  # standalone: no llamart package import at build time

    try:
        import cffi  # noqa: F401
    except ImportError:
        print(f"{MODULE}: cffi is not installed; the C declarations are parsed at run time")
        return 0
    print(f"wrote {emit(cdef_source(header), out_dir)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
