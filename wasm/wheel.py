"""Build the Pyodide wheel: ``python -m wasm.wheel [--wasm-dir DIR] [--out dist]``.

Writes ``dist/llamart-<version>-py3-none-pyemscripten_2026_0_wasm32.whl``: the pure package
(no native library, no bytecode) plus both WebAssembly modules and their emscripten glue as
package data in ``llamart/_wasm/``, loaded by ``llamart/bindings/pyodide_loader.py`` when an
``Engine`` is made inside Pyodide. The platform tag keeps a native pip from ever picking it;
micropip in Pyodide 314 accepts it. Deterministic (fixed timestamps, sorted entries).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import sys
import zipfile
from pathlib import Path

from llamart.bindings.pyodide_loader import FILES as LOADER_FILES

REPO = Path(__file__).resolve().parents[1]
PLATFORM_TAG = "pyemscripten_2026_0_wasm32"  # Pyodide 314 (pyodide-lock.json: abi 2026_0)
WHEEL_TAG = f"py3-none-{PLATFORM_TAG}"


def _names(*builds: str) -> tuple[str, ...]:
    """The files of these builds, as the package's loader names them (its FILES)."""
    return tuple(n for b in builds for n in LOADER_FILES[b] if n)


# the module files (python -m wasm.build), all required: llamart/_wasm/<name>
MODULE_FILES = _names("single", "threads")
# the relaxed-SIMD variants (python -m wasm.build --relaxed), with --relaxed: loaded instead of
# the plain builds where the engine validates relaxed SIMD (llamart/bindings/pyodide_loader.py)
RELAXED_FILES = _names("single-relaxed", "threads-relaxed")
# native binaries, bytecode, a stale module copy; llamart/data holds the native LoRA demo's
# adapter (LoRA is off in WebAssembly; the demo needs numpy): 1.8 MB compressed, left out
SKIP_DIRS = {"_lib", "__pycache__", "_wasm"}
SKIP_TREES = ("llamart/data/",)
SKIP_SUFFIXES = {".pyc", ".so", ".dylib", ".dll"}
REQUIRES = ("cffi>=1.15; sys_platform != 'emscripten'", "jinja2>=3.1.6")
_ZIP_TIME = (2024, 1, 1, 0, 0, 0)


def version() -> str:
    """llamart/_version.py's ``__version__``."""
    for line in (REPO / "llamart" / "_version.py").read_text(encoding="utf-8").splitlines():
        if line.startswith("__version__"):
            return line.split("=", 1)[1].strip().strip("\"'")
    raise SystemExit("wasm.wheel: llamart/_version.py has no __version__")


def wheel_name(ver: str | None = None) -> str:
    return f"llamart-{ver or version()}-{WHEEL_TAG}.whl"


def default_wasm_dir() -> Path:
    """Where python -m wasm.build writes both modules ($LLAMART_WASM_DIR overrides)."""
    return Path(os.environ.get("LLAMART_WASM_DIR") or REPO / "build-wasm" / "wasm")


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return "sha256=" + digest.decode("ascii")


def package_files(wasm_dir: Path, relaxed: bool | None = None) -> list[tuple[str, bytes]]:
    """(archive name, bytes) of the package and the module files; exits naming a missing one.
    ``relaxed``: the relaxed-SIMD modules too (None: when all of them are built)."""
    if relaxed is None:
        relaxed = all((wasm_dir / n).is_file() for n in RELAXED_FILES)
    files: list[tuple[str, bytes]] = []
    for path in sorted((REPO / "llamart").rglob("*")):
        rel = path.relative_to(REPO)
        if path.is_file() and not SKIP_DIRS.intersection(rel.parts) \
                and path.suffix not in SKIP_SUFFIXES \
                and not rel.as_posix().startswith(SKIP_TREES):
            files.append((rel.as_posix(), path.read_bytes()))
    names = MODULE_FILES + (RELAXED_FILES if relaxed else ())
    missing = [n for n in names if not (wasm_dir / n).is_file()]
    if missing:
        raise SystemExit(f"wasm.wheel: {', '.join(missing)} missing in {wasm_dir}: build the "
                         f"modules first (python -m wasm.build{' --relaxed' if relaxed else ''})")
    files += [(f"llamart/_wasm/{n}", (wasm_dir / n).read_bytes()) for n in names]
    return files


def metadata(ver: str) -> list[tuple[str, bytes]]:
    """The dist-info files but RECORD."""
    dist = f"llamart-{ver}.dist-info"
    meta = (f"Metadata-Version: 2.1\nName: llamart\nVersion: {ver}\n"
            "Summary: A Python runtime for llama.cpp GGUF models (Pyodide build: the package "
            "and its WebAssembly modules)\nRequires-Python: >=3.10\nLicense: MIT\n"
            + "".join(f"Requires-Dist: {r}\n" for r in REQUIRES))
    wheel = (f"Wheel-Version: 1.0\nGenerator: llamart wasm.wheel\nRoot-Is-Purelib: true\n"
             f"Tag: {WHEEL_TAG}\n")
    return [(f"{dist}/METADATA", meta.encode()), (f"{dist}/WHEEL", wheel.encode())]


def build_wheel(out_dir: Path, wasm_dir: Path | None = None,
                relaxed: bool | None = None) -> Path:
    """Write the wheel into ``out_dir`` (the relaxed-SIMD modules too: True, or None when they
    are built); returns its path."""
    ver = version()
    files = package_files(wasm_dir or default_wasm_dir(), relaxed) + metadata(ver)
    dist = f"llamart-{ver}.dist-info"
    record = "".join(f"{name},{_record_hash(data)},{len(data)}\n" for name, data in files)
    files.append((f"{dist}/RECORD", (record + f"{dist}/RECORD,,\n").encode()))
    out_dir.mkdir(parents=True, exist_ok=True)
    wheel = out_dir / wheel_name(ver)
    tmp = wheel.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for name, data in files:
            info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, data, compresslevel=9)
    os.replace(tmp, wheel)
    return wheel


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m wasm.wheel", description=__doc__)
    parser.add_argument("--wasm-dir", type=Path, default=None,
                        help="folder with both modules (default build-wasm/wasm)")
    parser.add_argument("--out", type=Path, default=REPO / "dist")
    parser.add_argument("--relaxed", action="store_true", default=None,
                        help="require the relaxed-SIMD modules (python -m wasm.build --relaxed; "
                        "by default they are packed when built)")
    args = parser.parse_args(argv)
    wheel = build_wheel(args.out, args.wasm_dir, args.relaxed)
    print(f"wasm.wheel: {wheel} ({wheel.stat().st_size / 1e6:.1f} MB)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
