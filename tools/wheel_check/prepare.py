"""What a wheel check needs, found or made on this machine (only PyPI is asked, by pin)."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
from pathlib import Path

from wasm import wheel as wheel_build

from ..pyodide_runner import paths
from ..pyodide_wheels import wheel_paths

# micropip as Pyodide 314's lock names it (0.11.1), from PyPI: a pure wheel, checked by sha256
MICROPIP = ("micropip", "0.11.1",
            "768de165adb8e66906039d8fec4127a57f522dfdf8e6fbff877a4616941ecfd3")
MODEL_PIN = "smollm2"  # llamart.pinned_models: SmolLM2-135M-Instruct Q4_1


def micropip_wheel() -> Path:
    """The pinned micropip wheel, downloaded once into .cache/ with pip."""
    name, version, sha = MICROPIP
    folder = paths.CACHE / "pyodide-wheels-micropip"
    target = folder / f"{name}-{version}-py3-none-any.whl"
    if not target.exists():
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=folder) as tmp:
            subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                            "--only-binary", ":all:", "--platform", "any", "--python-version",
                            "3.14", "--implementation", "py", f"{name}=={version}", "-d", tmp],
                           check=True)
            got = Path(tmp) / target.name
            digest = hashlib.sha256(got.read_bytes()).hexdigest()
            if digest != sha:
                raise SystemExit(f"wheel_check: {got.name}: sha256 {digest}, pinned {sha}")
            got.replace(target)
    return target


def llamart_wheel() -> Path:
    """The built Pyodide wheel in dist/ (``make pyodide-wheel``); exits saying how if missing."""
    path = paths.REPO / "dist" / wheel_build.wheel_name()
    if not path.is_file():
        raise SystemExit(f"wheel_check: {path} is missing: build it with `make pyodide-wheel`")
    return path


def dependency_wheels() -> list[Path]:
    """jinja2 and a pure markupsafe (tools/pyodide_wheels.py)."""
    return wheel_paths()


def model() -> Path:
    """SmolLM2's path in the model cache (fetched and checked on first use)."""
    from llamart import pinned_models

    return pinned_models.fetch(MODEL_PIN).resolve()
