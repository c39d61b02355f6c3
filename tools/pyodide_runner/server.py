"""The Chromium side of the Pyodide runner: the shared isolated HTTP server plus Playwright.

The server (tools/isolated_http.py, 127.0.0.1 only) serves the checkout (which holds
node_modules/pyodide) plus a few ``/__llamart__/`` routes: the run configuration, a zip of the
files the run needs (the ``trees`` of the configuration: llamart/, tools/, the folders the
pytest arguments name, the fixtures and the wheels, llamart's Pyodide wheel among them, plus
the checkout's pytest configuration; unpacked at the same absolute paths in the
browser's Pyodide FS), the large data files (``blobs`` of the configuration: real models,
llama.cpp's vocabulary files) one route each, which the worker fetches and puts at their host
folders in Pyodide's FS (llamart shares them with its module when it loads one): a folder
holding a file over ``BLOB_MIN_BYTES`` is mounted as Blobs (WORKERFS: no copy, but every read
is a synchronous Blob slice, slow for the many small reads of a GGUF header); a folder of
smaller files is written into memory (MEMFS); and endpoints the page's worker posts its output,
junit xml and exit code to.
"""

from __future__ import annotations

import io
import json
import sys
import threading
import zipfile
from pathlib import Path

from ..browser import run_page
from ..isolated_http import serve_in_thread
from . import paths

BLOB_MIN_BYTES = 32 << 20  # the real models (98 MB, 253 MB) are Blobs; vocabulary files copies
ROOT_FILES = ("pyproject.toml", "pytest.ini", "setup.cfg", "tox.ini", "conftest.py")
SKIP_DIRS = {"__pycache__", ".artifacts", ".pytest_cache", ".ruff_cache", "node_modules", ".git",
             ".cache", "build", "build-wasm"}


def _add_tree(zf: zipfile.ZipFile, folder: Path) -> None:
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not SKIP_DIRS.intersection(path.relative_to(folder).parts):
            zf.write(path, str(path).lstrip("/"))


def pack_tree(config: dict) -> bytes:
    """Zip the files the in-browser run needs, named by absolute path (minus the leading /)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for tree in config["trees"]:
            _add_tree(zf, Path(tree))
        for name in ROOT_FILES:
            if (paths.REPO / name).is_file():
                zf.write(paths.REPO / name, str(paths.REPO / name).lstrip("/"))
    return buf.getvalue()


class RunState:
    """What the browser reported back."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.code = 3
        self.junit: bytes | None = None

    def on_post(self, path: str, data: bytes) -> bool:
        """The worker's reports: output streams, junit xml, the exit code."""
        if path == "/__llamart__/out":
            sys.stdout.buffer.write(data)
            sys.stdout.flush()
        elif path == "/__llamart__/err":
            sys.stderr.buffer.write(data)
            sys.stderr.flush()
        elif path == "/__llamart__/junit":
            self.junit = data
        elif path == "/__llamart__/done":
            self.code = int(json.loads(data)["code"])
            self.done.set()
        else:
            return False
        return True


def run_chromium(config: dict, timeout: float) -> int:
    """Serve the checkout, open the runner page in headless Chromium, return pytest's code."""
    state = RunState()
    junit_path = Path(config["junit"])
    blob_routes = {f"/__llamart__/data/{i}/{Path(f).name}": Path(f)
                   for i, files in enumerate(config["blobs"].values()) for f in files}
    browser_config = {
        **config,
        "blobs": {folder: {"mount": any(Path(f).stat().st_size > BLOB_MIN_BYTES for f in files),
                           "files": [{"name": Path(f).name,
                                      "url": f"/__llamart__/data/{i}/{Path(f).name}"}
                                     for f in files]}
                  for i, (folder, files) in enumerate(config["blobs"].items())},
        "junit": "/tmp/llamart-junit.xml",
        "pyodideUrl": "/node_modules/pyodide/",
    }
    routes: dict[str, bytes | Path] = {
        **blob_routes,
        "/__llamart__/config.json": json.dumps(browser_config).encode(),
        "/__llamart__/tree.zip": pack_tree(config),
    }
    server, url = serve_in_thread(paths.REPO, routes=routes, on_post=state.on_post,
                                  name="pyodide_runner server", isolated=config["isolated"])
    page = url + "/" + (paths.RUNNER_DIR / "page.html").relative_to(paths.REPO).as_posix()
    try:
        if not run_page(page, state.done, timeout, echo_console=True):
            print("pyodide_runner: browser run ended without a result", file=sys.stderr)
    finally:
        server.shutdown()
        server.server_close()
    if state.junit is not None:
        junit_path.write_bytes(state.junit)
    return state.code
