"""Pure-Python wheels of llamart's runtime dependencies for Pyodide, pinned and built offline.

Pyodide's npm package ships no wheels, and markupsafe (jinja2's dependency) has no pure wheel
on PyPI: its sdist is fetched with pip (by name, version and sha256) and built with the C
compiler disabled (``CC=/bin/false``), where markupsafe's setup falls back to pure Python.
jinja2's own wheel is pure. Both land in ``.cache/pyodide-wheels-runtime/``.

``python -m tools.pyodide_wheels`` builds them and prints their paths; :func:`wheel_paths` is
what a Pyodide runner calls to get the list it unpacks (or passes to ``pyodide.loadPackage``).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FOLDER = REPO / ".cache" / "pyodide-wheels-runtime"


@dataclass(frozen=True)
class Pin:
    """A package pinned by version and by the sha256 of the file pip downloads."""

    name: str
    version: str
    kind: str  # "wheel" (used as is) or "sdist" (built as a pure wheel)
    sha256: str


PINS = (
    Pin("jinja2", "3.1.6", "wheel",
        "85ece4451f492d0c13c5dd7c13a64681a86afae63a5f347908daf103ce6d2f67"),
    Pin("markupsafe", "3.0.4", "sdist",
        "2e9ad7dd851bf45fab9f75cbff4cb493fee9979e8d8c7c9c3ee119022518edd6"),
)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _download(pin: Pin, dest: Path) -> Path:
    kind = ["--only-binary", ":all:"] if pin.kind == "wheel" else ["--no-binary", ":all:"]
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", *kind,
                    f"{pin.name}=={pin.version}", "-d", str(dest)], check=True)
    (got,) = [p for p in dest.iterdir() if p.name.lower().startswith(pin.name + "-")]
    if _sha256(got) != pin.sha256:
        raise SystemExit(f"pyodide_wheels: {got.name}: sha256 {_sha256(got)}, "
                         f"pinned {pin.sha256} (corrupt or changed download)")
    return got


def _wheel_name(pin: Pin) -> str:
    return f"{pin.name}-{pin.version}-py3-none-any.whl"


def _build_pure(sdist: Path, out: Path) -> None:
    env = dict(os.environ, CC="/bin/false", CXX="/bin/false")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w",
                    str(out), str(sdist)], check=True, env=env)


def wheel_paths(folder: Path = FOLDER) -> list[Path]:
    """The pure wheels (jinja2, markupsafe), downloaded and built on first use."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for pin in PINS:
        target = folder / _wheel_name(pin)
        if not target.exists():
            print(f"pyodide_wheels: fetching {pin.name}=={pin.version} ({pin.kind})",
                  file=sys.stderr, flush=True)
            with tempfile.TemporaryDirectory(dir=folder) as tmp:
                got = _download(pin, Path(tmp))
                if pin.kind == "sdist":
                    _build_pure(got, Path(tmp))
                    got = Path(tmp) / _wheel_name(pin)
                    if not got.exists():
                        raise SystemExit(f"pyodide_wheels: building {pin.name} gave no pure "
                                         f"wheel ({sorted(os.listdir(tmp))})")
                os.replace(got, target)
        paths.append(target)
    return paths


if __name__ == "__main__":
    for p in wheel_paths():
        print(p)
