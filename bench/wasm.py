"""The WebAssembly backend (llamart in Pyodide) under Node and in headless Chromium, against the
native backend with 1 thread, on each selected model (config.WASM_MODELS): the single-threaded
module at 1 thread, and the pthreads module at 1 and at all threads (up to 2). Reuses the llamart
WebAssembly builds (build-wasm/wasm, wasm/llamart_pyodide.js), the npm pyodide package (npm ci),
and the checkout's one isolated HTTP server and Chromium launcher (tools/isolated_http.py,
tools/browser.py)."""

from __future__ import annotations

import io
import json
import os
import tempfile
import threading
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tools.browser import CHROMIUM, run_page
from tools.isolated_http import serve_in_thread
from tools.pyodide_runner.paths import RELAXED_FILES, WASM_FILES, wasm_dir

from . import systems
from .config import N_BATCH, REPO, ModelSpec
from .proc import BenchError, run_child

PYODIDE_DIR = REPO / "node_modules" / "pyodide"
GLUE = REPO / "wasm" / "llamart_pyodide.js"
WEB = Path(__file__).with_name("web")
ENTRY = Path(__file__).with_name("wasm_entry.py")
# V8 compiles WebAssembly lazily (a baseline tier first, optimized code for hot functions later,
# in the background): the first ~100 tokens would be timed partly on baseline code. Both runtimes
# get every function optimized up front, so the figures are the steady state, as native code is.
V8_FLAGS = ["--no-liftoff"]


def missing() -> str | None:
    """Why the WebAssembly measurement cannot run here (None when it can)."""
    d = wasm_dir()
    for which, files in WASM_FILES.items():
        if not all((d / f).exists() for f in files.values()):
            return f"no {which} WebAssembly build in {d} (python -m wasm.build)"
    if not (PYODIDE_DIR / "pyodide.js").exists():
        return f"no pyodide in {PYODIDE_DIR} (npm ci)"
    return None


def _job(spec: ModelSpec, prompt: list[int], n_threads: int = 1) -> dict[str, Any]:
    return {"kind": "speed", "backend": None, "model": str(spec.file), "n_ctx": spec.n_ctx,
            "n_batch": N_BATCH, "n_threads": n_threads, "prompt": prompt, "n_gen": spec.n_gen,
            "reps": spec.reps}


def relaxed_built() -> bool:
    """Whether the relaxed-SIMD variants are built (python -m wasm.build --relaxed)."""
    d = wasm_dir()
    return all((d / f).exists() for fs in RELAXED_FILES.values() for f in fs.values())


def _module(build: str, where: Any, relaxed: bool = False) -> dict[str, Any]:
    """The glue's options for one build: {glue, wasm, threaded, threads} (forced, not chosen),
    with its relaxed-SIMD variant when ``relaxed`` (loaded where the engine validates it, as
    users get it)."""
    def files_of(which: str) -> dict[str, Any]:
        got = {k: where(v) for k, v in WASM_FILES[which].items()}
        if relaxed:
            got["relaxed"] = {k: where(v) for k, v in RELAXED_FILES[which].items()}
        return got
    single = files_of("single")
    if build == "single":
        return {**single, "threaded": None, "threads": False}
    return {**single, "threads": True, "threaded": files_of("threads")}


def run_node(spec: ModelSpec, prompt: list[int], build: str = "single",
             n_threads: int = 1) -> dict[str, Any]:
    return run_node_job(_job(spec, prompt, n_threads), build)


ALL_THREADS = min(2, os.cpu_count() or 1)  # the threads rows: every core of this 2-core machine


def system_name(runtime: str, build: str, n_threads: int) -> str:
    """A WebAssembly row's name: "Pyodide + Node" is the single-thread module (as before)."""
    if build == "single":
        return f"Pyodide + {runtime}"
    return f"Pyodide + {runtime}, threads module, {n_threads} thread{'s' if n_threads > 1 else ''}"


NODE_MODEL_DIR = "/bench-model"  # where the model's folder is mounted in the runtime's FS


def run_node_job(job: dict[str, Any], build: str = "single") -> dict[str, Any]:
    """One bench.llamart_job function (``job["kind"]``) in Pyodide under Node. The model's real
    folder (symlinks resolved: emscripten's NODEFS does not follow one out of its mount) is
    mounted at NODE_MODEL_DIR."""
    d = wasm_dir()
    model = Path(job["model"]).resolve()
    config = {"pyodideDir": str(PYODIDE_DIR), "glueJs": str(GLUE), "repo": str(REPO),
              "wasm": _module(build, lambda name: str(d / name)),
              "entry": str(ENTRY), "modelDir": str(model.parent), "modelFsDir": NODE_MODEL_DIR,
              "job": {**job, "model": f"{NODE_MODEL_DIR}/{model.name}"}}
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
    """What the bench page posted back."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: str | None = None
        self.error: str | None = None
        self.log: list[str] = []

    def on_post(self, path: str, data: bytes) -> bool:
        route, text = path.rsplit("/", 1)[-1], data.decode()
        if route == "log":
            self.log.append(text)
        elif route in ("result", "error"):
            setattr(self, route, text)
            self.done.set()
        else:
            return False
        return True


def run_chromium(spec: ModelSpec, prompt: list[int], build: str = "single", n_threads: int = 1,
                 timeout: float = 300.0) -> dict[str, Any]:
    d = wasm_dir()
    rel = lambda p: "/" + str(Path(p).relative_to(REPO))  # noqa: E731 (files in the checkout)
    relaxed = relaxed_built()
    sets = [WASM_FILES, RELAXED_FILES] if relaxed else [WASM_FILES]
    files: dict[str, bytes | Path] = {
        f"/__bench__/{name}": d / name for s in sets for fs in s.values() for name in fs.values()}
    files["/__bench__/model.gguf"] = spec.file  # wherever they are
    config = {"glueUrl": rel(GLUE),
              "wasm": _module(build, lambda name: f"/__bench__/{name}", relaxed),
              "modelUrl": "/__bench__/model.gguf", "modelName": spec.file.name,
              "repo": "/bench-repo", "entryUrl": rel(ENTRY),
              "job": _job(spec, prompt, n_threads)}
    routes = {"/__bench__/config.json": json.dumps(config).encode(),
              "/__bench__/tree.zip": _tree_zip(), **files}
    return run_bench_page("/bench/web/page.html", routes, timeout, name="bench",
                          what="Chromium run", extra_flags=["--js-flags=" + " ".join(V8_FLAGS)])


def run_bench_page(page: str, routes: dict[str, bytes | Path], timeout: float, *, name: str,
                   what: str, extra_flags: Sequence[str] = ()) -> dict[str, Any]:
    """Serve ``routes`` (and the checkout) on the isolated server, open ``page`` in Chromium
    and return the JSON it posts to /result (BenchError with its last log lines otherwise)."""
    state = _State()
    server, url = serve_in_thread(REPO, routes=routes, on_post=state.on_post, name=name)
    try:
        run_page(url + page, state.done, timeout, extra_flags=extra_flags)
    finally:
        server.shutdown()
        server.server_close()
    if state.error or state.result is None:
        raise BenchError(f"{what} failed: {state.error or 'timed out'}\n"
                         + "\n".join(state.log[-20:]))
    return json.loads(state.result)


def measure(spec: ModelSpec, prompt: list[int], rounds: int, *, browser: bool = True,
            log=print) -> dict[str, Any]:
    """Rounds of (native 1 thread, then in Pyodide/Node and Pyodide/Chromium: the single-thread
    module, the pthreads module at 1 thread and at all threads), rotated each round."""
    reason = missing()
    if reason:
        log(f"bench: WebAssembly skipped: {reason}")
        return {"unavailable": reason}
    runners: dict[str, Any] = {"native (1 thread)": lambda: systems.run_llamart(spec, 1, prompt)}
    runtimes: dict[str, Any] = {"Node": run_node}
    if browser and Path(CHROMIUM).exists():
        runtimes["Chromium"] = run_chromium
    for runtime, run in runtimes.items():
        for build, n in (("single", 1), ("threads", 1), ("threads", ALL_THREADS)):
            runners[system_name(runtime, build, n)] = (
                lambda run=run, build=build, n=n: run(spec, prompt, build, n))
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
