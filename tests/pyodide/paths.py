"""Where the Pyodide runner finds things in the checkout."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / ".cache"
ARTIFACTS = REPO / "tests" / ".artifacts"
PYODIDE_DIR = REPO / "node_modules" / "pyodide"


def wasm_dir() -> Path:
    """Folder holding llamart_wasm.js and llamart_wasm.wasm ($LLAMART_WASM_DIR overrides)."""
    return Path(os.environ.get("LLAMART_WASM_DIR") or REPO / "build-wasm" / "wasm").resolve()
