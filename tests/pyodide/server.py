"""The Chromium side of the Pyodide runner: a local HTTP server plus Playwright.

The server (127.0.0.1 only) serves the checkout (which holds node_modules/pyodide and the wasm
build) with WebAssembly/JavaScript MIME types and COOP/COEP headers, plus a few ``/__llamart__/``
routes: the run configuration, a zip of the files the tests need (llamart/, tests/, wheels,
fixtures; unpacked at the same absolute paths in the browser's Pyodide FS), and endpoints the
page's worker posts its output, junit xml and exit code to.
"""

from __future__ import annotations

import io
import json
import sys
import threading
import zipfile
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from . import paths

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
]
ROOT_FILES = ("pyproject.toml", "pytest.ini", "setup.cfg", "tox.ini", "conftest.py")
SKIP_DIRS = {"__pycache__", ".artifacts", ".pytest_cache", ".ruff_cache", "node_modules"}


def _add_tree(zf: zipfile.ZipFile, folder: Path) -> None:
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not SKIP_DIRS.intersection(path.relative_to(folder).parts):
            zf.write(path, str(path).lstrip("/"))


def pack_tree(config: dict, fixtures: Path) -> bytes:
    """Zip the files the in-browser run needs, named by absolute path (minus the leading /)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for name in ("llamart", "tests"):
            _add_tree(zf, paths.REPO / name)
        for name in ROOT_FILES:
            if (paths.REPO / name).is_file():
                zf.write(paths.REPO / name, str(paths.REPO / name).lstrip("/"))
        _add_tree(zf, fixtures)
        for arg in config["args"]:  # test paths outside llamart/ and tests/ (e.g. tools/x.py)
            path = (paths.REPO / arg.split("::")[0]).resolve()
            inside = path.is_relative_to(paths.REPO) and path.parts[len(paths.REPO.parts):][:1]
            if inside and inside[0] not in ("llamart", "tests") and path.exists():
                if path.is_dir():
                    _add_tree(zf, path)
                else:
                    zf.write(path, str(path).lstrip("/"))
        for wheel in config["wheels"]:
            zf.write(wheel, wheel.lstrip("/"))
    return buf.getvalue()


class RunState:
    """What the browser reported back."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.code = 3
        self.junit: bytes | None = None


class Handler(SimpleHTTPRequestHandler):
    """Static files from the checkout plus the runner's /__llamart__/ routes."""

    extensions_map = {
        **SimpleHTTPRequestHandler.extensions_map,
        ".wasm": "application/wasm",
        ".js": "text/javascript",
        ".mjs": "text/javascript",
        ".cjs": "text/javascript",
        ".zip": "application/zip",
        ".whl": "application/zip",
        ".gguf": "application/octet-stream",
    }

    def __init__(self, *args, state: RunState, routes: dict[str, bytes], **kwargs) -> None:
        self.state = state
        self.routes = routes
        super().__init__(*args, **kwargs)

    def end_headers(self) -> None:
        self.send_header("Cross-Origin-Opener-Policy", "same-origin")
        self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        self.send_header("Cross-Origin-Resource-Policy", "same-origin")
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (stdlib signature)
        if len(args) > 1 and str(args[1]).startswith(("4", "5")):
            sys.stderr.write(f"tests.pyodide server: {format % args}\n")

    def do_GET(self) -> None:  # noqa: N802 (stdlib name)
        body = self.routes.get(self.path.split("?")[0])
        if body is None:
            return super().do_GET()
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # noqa: N802 (stdlib name)
        data = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path == "/__llamart__/out":
            sys.stdout.buffer.write(data)
            sys.stdout.flush()
        elif self.path == "/__llamart__/err":
            sys.stderr.buffer.write(data)
            sys.stderr.flush()
        elif self.path == "/__llamart__/junit":
            self.state.junit = data
        elif self.path == "/__llamart__/done":
            self.state.code = int(json.loads(data)["code"])
            self.state.done.set()
        else:
            self.send_error(404)
            return
        self.send_response(204)
        self.end_headers()


def run_chromium(config: dict, fixtures: Path, timeout: float) -> int:
    """Serve the checkout, open the runner page in headless Chromium, return pytest's code."""
    from playwright.sync_api import sync_playwright

    state = RunState()
    junit_path = Path(config["junit"])
    browser_config = {
        **config,
        "junit": "/tmp/llamart-junit.xml",
        "pyodideUrl": "/node_modules/pyodide/",
        "wasm": config["wasm"] and {k: "/" + str(Path(v).relative_to(paths.REPO))
                                    for k, v in config["wasm"].items()},
    }
    routes = {
        "/__llamart__/config.json": json.dumps(browser_config).encode(),
        "/__llamart__/tree.zip": pack_tree(config, fixtures),
    }
    handler = partial(Handler, state=state, routes=routes, directory=str(paths.REPO))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/tests/pyodide/page.html"
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS,
                                         headless=True)
            page = browser.new_page()
            page.on("console", lambda msg: msg.type in ("error", "warning") and print(
                f"[browser {msg.type}] {msg.text}", file=sys.stderr, flush=True))
            page.on("pageerror", lambda err: print(f"[browser page error] {err}",
                                                   file=sys.stderr, flush=True))
            page.goto(url)
            waited = 0.0
            while not state.done.is_set():
                if page.is_closed() or waited > timeout:
                    print("tests.pyodide: browser run ended without a result", file=sys.stderr)
                    break
                page.wait_for_timeout(250)
                waited += 0.25
            browser.close()
    finally:
        server.shutdown()
        server.server_close()
    if state.junit is not None:
        junit_path.write_bytes(state.junit)
    return state.code
