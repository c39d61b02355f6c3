"""The WebAssembly backend (llamart in Pyodide) under Node and in headless Chromium, against the
native backend with 1 thread, on the small Q8_0 model. Reuses the llamart WebAssembly build
(build-wasm/wasm, wasm/llamart_pyodide.js) and the npm pyodide package (npm ci)."""

from __future__ import annotations

import io
import json
import os
import tempfile
import threading
import time
import zipfile
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from . import systems
from .config import N_BATCH, REPO, ModelSpec
from .proc import BenchError, run_child

PYODIDE_DIR = REPO / "node_modules" / "pyodide"
GLUE = REPO / "wasm" / "llamart_pyodide.js"
WEB = Path(__file__).with_name("web")
ENTRY = Path(__file__).with_name("wasm_entry.py")
CHROMIUM = "/usr/bin/chromium"
# V8 compiles WebAssembly lazily (a baseline tier first, optimized code for hot functions later,
# in the background): the first ~100 tokens would be timed partly on baseline code. Both runtimes
# get every function optimized up front, so the figures are the steady state, as native code is.
V8_FLAGS = ["--no-liftoff"]
CHROMIUM_FLAGS = ["--js-flags=" + " ".join(V8_FLAGS), "--headless", "--no-sandbox", "--disable-gpu",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"]


def wasm_dir() -> Path:
    return Path(os.environ.get("LLAMART_WASM_DIR") or REPO / "build-wasm" / "wasm")


def missing() -> str | None:
    """Why the WebAssembly measurement cannot run here (None when it can)."""
    d = wasm_dir()
    if not (d / "llamart_wasm.js").exists() or not (d / "llamart_wasm.wasm").exists():
        return f"no WebAssembly build in {d} (python -m wasm.build)"
    if not (PYODIDE_DIR / "pyodide.js").exists():
        return f"no pyodide in {PYODIDE_DIR} (npm ci)"
    return None


def _job(spec: ModelSpec, prompt: list[int]) -> dict[str, Any]:
    return {"kind": "speed", "backend": None, "model": str(spec.file), "n_ctx": spec.n_ctx,
            "n_batch": N_BATCH, "n_threads": 1, "prompt": prompt, "n_gen": spec.n_gen,
            "reps": spec.reps}


def run_node(spec: ModelSpec, prompt: list[int]) -> dict[str, Any]:
    return run_node_job(_job(spec, prompt))


def run_node_job(job: dict[str, Any]) -> dict[str, Any]:
    """One bench.llamart_job function (``job["kind"]``) in Pyodide under Node."""
    d = wasm_dir()
    config = {"pyodideDir": str(PYODIDE_DIR), "glueJs": str(GLUE), "repo": str(REPO),
              "wasm": {"glue": str(d / "llamart_wasm.js"), "wasm": str(d / "llamart_wasm.wasm")},
              "entry": str(ENTRY), "job": job}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(config, f)
    try:
        run = run_child(["node", *V8_FLAGS, str(WEB / "wasm_node.cjs"), f.name], cwd=str(REPO))
    finally:
        os.unlink(f.name)
    return {**run.result(), "maxrss_mb": run.maxrss_mb}


def _tree_zip() -> bytes:
    """The llamart package and bench/llamart_job.py, named relative to the repo."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for path in sorted((REPO / "llamart").rglob("*.py")):
            zf.write(path, str(path.relative_to(REPO)))
        for name in ("__init__.py", "llamart_job.py"):
            zf.write(REPO / "bench" / name, f"bench/{name}")
    return buf.getvalue()


class _State:
    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: str | None = None
        self.error: str | None = None
        self.log: list[str] = []


class _Handler(SimpleHTTPRequestHandler):
    extensions_map = {**SimpleHTTPRequestHandler.extensions_map, ".wasm": "application/wasm",
                      ".js": "text/javascript", ".mjs": "text/javascript",
                      ".gguf": "application/octet-stream"}

    def __init__(self, *args: Any, state: _State, routes: dict[str, bytes], **kw: Any) -> None:
        self.state, self.routes = state, routes
        super().__init__(*args, **kw)

    def end_headers(self) -> None:
        self.send_header("Cross-Origin-Opener-Policy", "same-origin")
        self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib signature)
        pass

    def do_GET(self) -> None:  # noqa: N802 (stdlib name)
        body = self.routes.get(self.path.split("?")[0])
        if body is None:
            return super().do_GET()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # noqa: N802 (stdlib name)
        data = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
        route = self.path.rsplit("/", 1)[-1]
        if route == "log":
            self.state.log.append(data)
        elif route == "result":
            self.state.result = data
            self.state.done.set()
        elif route == "error":
            self.state.error = data
            self.state.done.set()
        self.send_response(204)
        self.end_headers()


def run_chromium(spec: ModelSpec, prompt: list[int], timeout: float = 300.0) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    d = wasm_dir()
    rel = lambda p: "/" + str(Path(p).resolve().relative_to(REPO))  # noqa: E731
    config = {"glueUrl": rel(GLUE), "wasm": {"glue": rel(d / "llamart_wasm.js"),
                                             "wasm": rel(d / "llamart_wasm.wasm")},
              "modelUrl": rel(spec.file), "modelName": spec.file.name, "repo": "/bench-repo",
              "entryUrl": rel(ENTRY), "job": _job(spec, prompt)}
    state = _State()
    routes = {"/__bench__/config.json": json.dumps(config).encode(),
              "/__bench__/tree.zip": _tree_zip()}
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Handler, state=state, routes=routes,
                                                           directory=str(REPO)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS,
                                         headless=True)
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{server.server_address[1]}/bench/web/page.html")
            waited = 0.0
            while not state.done.is_set() and waited < timeout:
                page.wait_for_timeout(200)
                waited += 0.2
            browser.close()
    finally:
        server.shutdown()
        server.server_close()
    if state.error or state.result is None:
        raise BenchError(f"Chromium run failed: {state.error or 'timed out'}\n"
                         + "\n".join(state.log[-20:]))
    return json.loads(state.result)


def measure(spec: ModelSpec, prompt: list[int], rounds: int, *, browser: bool = True,
            log=print) -> dict[str, Any]:
    """Rounds of (native 1 thread, Pyodide/Node, Pyodide/Chromium), rotated each round."""
    reason = missing()
    if reason:
        log(f"bench: WebAssembly skipped: {reason}")
        return {"unavailable": reason}
    runners = {"native (1 thread)": lambda: systems.run_llamart(spec, 1, prompt),
               "Pyodide + Node": lambda: run_node(spec, prompt)}
    if browser and Path(CHROMIUM).exists():
        runners["Pyodide + Chromium"] = lambda: run_chromium(spec, prompt)
    names = list(runners)
    out: dict[str, Any] = {"model": spec.key, "systems": {}}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            started = time.monotonic()
            entry = out["systems"].setdefault(name, {})
            try:
                res = runners[name]()
            except (BenchError, Exception) as e:  # keep going: report what failed
                log(f"bench: {name} failed: {e}")
                entry.setdefault("errors", []).append(str(e)[:800])
                continue
            entry.setdefault("pp_tps", []).extend(spec.n_prompt / s for s in res["pp_s"])
            entry.setdefault("tg_tps", []).extend(
                n / s for n, s in zip(res["tg_tokens"], res["tg_s"], strict=True))
            entry.setdefault("load_s", []).append(res.get("load_s"))
            entry.setdefault("maxrss_mb", []).append(res.get("maxrss_mb"))
            entry.setdefault("wasm_heap_mb", []).append(res.get("wasm_heap_mb"))
            entry["system_info"] = res.get("system_info")
            log(f"bench: wasm {spec.key} round {r + 1}/{rounds} {name}: "
                f"pp {max(entry['pp_tps']):.1f} t/s, tg {max(entry['tg_tps']):.1f} t/s "
                f"({time.monotonic() - started:.1f} s)")
    return out
