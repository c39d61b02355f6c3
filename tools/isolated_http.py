"""The one local HTTP server for pages that run Pyodide and the llamart WebAssembly module.

Used by the Pyodide test runner (tools/pyodide_runner), the web demo (web_demo/server.py) and
the benchmark's browser pages (bench/wasm.py). It serves files with the MIME types browsers
insist on for WebAssembly and module scripts, and with the COOP/COEP/CORP headers that make the
page cross-origin isolated (SharedArrayBuffer, precise timers). On top of the static files:
GET routes (``routes``: a path -> bytes served as they are, or -> a local file served with its
MIME type, wherever it is), a POST callback (``on_post``), and optionally a resolver that
restricts which local paths may be served (``resolve``; then directories are never listed),
and ``isolated=False`` to serve without COOP/COEP, as a plain web host does (no
SharedArrayBuffer: the single-threaded module is what runs there).
Binds 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Mapping
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

MIME_TYPES = {
    ".wasm": "application/wasm",
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".cjs": "text/javascript",
    ".zip": "application/zip",
    ".whl": "application/zip",
    ".gguf": "application/octet-stream",
}
ISOLATION_HEADERS = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "no-store",
}
_NOWHERE = "/nonexistent/llamart-isolated-http/x"  # what an unresolved path maps to (a 404)

PostHandler = Callable[[str, bytes], bool]  # (path, body) -> handled (204) or not (404)
Resolver = Callable[[str], "Path | None"]  # request path -> local file or folder, None: 404


class IsolatedHandler(SimpleHTTPRequestHandler):
    """Static files with WebAssembly MIME types and isolation headers, plus in-memory routes."""

    extensions_map = {**SimpleHTTPRequestHandler.extensions_map, **MIME_TYPES}

    def __init__(self, *args: Any, routes: Mapping[str, bytes | Path] | None = None,
                 on_post: PostHandler | None = None, resolve: Resolver | None = None,
                 name: str = "server", isolated: bool = True, **kwargs: Any) -> None:
        self.routes = routes or {}
        self.isolated = isolated
        self.on_post = on_post
        self.resolve = resolve
        self.name = name
        super().__init__(*args, **kwargs)

    def end_headers(self) -> None:
        for key, value in ISOLATION_HEADERS.items():
            if self.isolated or key == "Cache-Control":
                self.send_header(key, value)
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib signature)
        if len(args) > 1 and str(args[1]).startswith(("4", "5")):
            sys.stderr.write(f"{self.name}: {format % args}\n")

    def translate_path(self, path: str) -> str:
        routed = self.routes.get(path.split("?")[0])
        if isinstance(routed, Path):
            return str(routed)
        if self.resolve is None:
            return super().translate_path(path)
        local = self.resolve(path)
        return str(local) if local is not None else _NOWHERE

    def list_directory(self, path: Any) -> Any:
        if self.resolve is not None:
            self.send_error(404, "No directory listings here")
            return None
        return super().list_directory(path)

    def do_GET(self) -> None:  # noqa: N802 (stdlib name)
        body = self.routes.get(self.path.split("?")[0])
        if not isinstance(body, bytes):
            return super().do_GET()
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # noqa: N802 (stdlib name)
        if self.on_post is None:
            self.send_error(405)
            return
        data = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if not self.on_post(self.path, data):
            self.send_error(404)
            return
        self.send_response(204)
        self.end_headers()


def make_server(directory: Path, host: str = "127.0.0.1", port: int = 0,
                **handler_options: Any) -> ThreadingHTTPServer:
    """A bound, not yet serving, server for ``directory`` (port 0: any free port)."""
    handler = partial(IsolatedHandler, directory=str(directory), **handler_options)
    return ThreadingHTTPServer((host, port), handler)


def serve_in_thread(directory: Path, host: str = "127.0.0.1", port: int = 0,
                    **handler_options: Any) -> tuple[ThreadingHTTPServer, str]:
    """Serve on a daemon thread; returns the server and its base URL (no trailing slash).
    Stop it with ``server.shutdown(); server.server_close()``."""
    server = make_server(directory, host, port, **handler_options)
    threading.Thread(target=server.serve_forever, daemon=True, name="isolated-http").start()
    return server, f"http://{host}:{server.server_address[1]}"
