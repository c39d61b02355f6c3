"""wllama (npm ``@wllama/wllama``, pinned in package.json) beside llamart in headless Chromium, on
the same GGUF files, at 1 thread and at all cores. Served from node_modules by the checkout's one
isolated HTTP server (COOP/COEP: wllama needs SharedArrayBuffer for its threads) and run by the
one Chromium launcher (tools/isolated_http.py, tools/browser.py); nothing comes from elsewhere.

The page (bench/web/wllama_page.mjs) times wllama's public API like bench/llamart_job.py's
``speed``: after ``loadModel`` (one slot, n_ctx = n_prompt + n_gen, n_batch = n_ubatch = 512,
``n_gpu_layers: 0``), pp = ``createCompletion`` on a text prompt of exactly ``n_prompt`` tokens (1
token predicted, ``cache_prompt: false``, so every run starts from an empty KV cache), tg =
``createCompletion`` on a one-token prompt predicting ``n_gen`` greedy tokens (``ignore_eos``);
each a warm-up then ``reps`` timed runs, wall clock around the call. wllama's own llama-server
timings are kept beside them. wllama takes no token ids, so bench/wllama_prompt.py makes the text
and the ids llamart's side of the comparison gets (the same tokens, by llama.cpp's tokenizer).
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

from tools.browser import CHROMIUM

from . import wasm
from .config import N_BATCH, REPO, ModelSpec, native_lib_dir
from .proc import BenchError, run_child

MODELS = ("smollm2-q4_1", "gemma3-q4_k_m")  # the real models (config.MODELS keys)
PACKAGE = "@wllama/wllama"
WLLAMA_DIR = REPO / "node_modules" / "@wllama" / "wllama"
WLLAMA_WASM = WLLAMA_DIR / "esm" / "wasm" / "wllama.wasm"
WLLAMA_GLUE = WLLAMA_DIR / "esm" / "index.js"
PAGE = "/bench/web/wllama_page.html"


def pinned_version() -> str | None:
    """The version package.json pins (the one place it is named)."""
    pkg = json.loads((REPO / "package.json").read_text())
    return (pkg.get("devDependencies") or {}).get(PACKAGE)


def installed_version() -> str | None:
    path = WLLAMA_DIR / "package.json"
    return json.loads(path.read_text()).get("version") if path.exists() else None


def missing() -> str | None:
    """Why wllama cannot run here (None when it can)."""
    if not Path(CHROMIUM).exists():
        return f"no Chromium at {CHROMIUM}"
    if not WLLAMA_WASM.exists() or not WLLAMA_GLUE.exists():
        return f"no {PACKAGE} in {WLLAMA_DIR} (npm ci)"
    if installed_version() != pinned_version():
        return (f"{PACKAGE} {installed_version()} installed, package.json pins "
                f"{pinned_version()} (npm ci)")
    return None


def _leb(data: bytes, pos: int) -> tuple[int, int]:
    """An unsigned LEB128 number at ``pos``: (value, next position)."""
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def _name(data: bytes, pos: int) -> tuple[str, int]:
    n, pos = _leb(data, pos)
    return data[pos:pos + n].decode(), pos + n


def _limits(data: bytes, pos: int) -> tuple[dict[str, Any], int]:
    flags = data[pos]
    pos += 1
    _initial, pos = _leb(data, pos)
    if flags & 1:
        _maximum, pos = _leb(data, pos)
    return {"shared": bool(flags & 2), "memory64": bool(flags & 4)}, pos


def wasm_memories(data: bytes) -> list[dict[str, Any]]:
    """The memories a WebAssembly binary imports or defines, each with its shared and memory64
    flags (from the limits byte of the import and memory sections)."""
    if data[:4] != b"\0asm":
        raise ValueError("not a WebAssembly binary")
    pos, out = 8, []
    while pos < len(data):
        section = data[pos]
        size, body = _leb(data, pos + 1)
        pos, end = body, body + size
        if section == 2:  # imports
            count, pos = _leb(data, pos)
            for _ in range(count):
                module, pos = _name(data, pos)
                field, pos = _name(data, pos)
                kind = data[pos]
                pos += 1
                if kind == 0:  # function: a type index
                    _, pos = _leb(data, pos)
                elif kind == 1:  # table: a reference type and limits
                    _, pos = _limits(data, pos + 1)
                elif kind == 2:
                    mem, pos = _limits(data, pos)
                    out.append({"import": f"{module}.{field}", **mem})
                elif kind == 3:  # global: a value type and mutability
                    pos += 2
                else:  # a tag (exceptions): attribute byte, type index
                    _, pos = _leb(data, pos + 1)
        elif section == 5:  # memories defined in the module
            count, pos = _leb(data, pos)
            for _ in range(count):
                mem, pos = _limits(data, pos)
                out.append({"import": None, **mem})
        pos = end
    return out


def module_info() -> dict[str, Any]:
    """Which wllama module runs: its path in the package, size, sha256 and memory kind."""
    data = WLLAMA_WASM.read_bytes()
    return {"package": PACKAGE, "version": installed_version(),
            "path": str(WLLAMA_WASM.relative_to(WLLAMA_DIR)), "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(), "memories": wasm_memories(data)}


def text_prompts(spec: ModelSpec) -> dict[str, Any]:
    """{"text", "ids", "tg_text", "tg_ids"}: see bench/wllama_prompt.py (a native child)."""
    env = {"LLAMART_LIB_DIR": lib} if (lib := native_lib_dir()) else {}
    job = {"model": str(spec.file), "n_ctx": spec.n_ctx, "n_prompt": spec.n_prompt}
    return run_child([sys.executable, "-m", "bench.wllama_prompt", json.dumps(job)], env=env,
                     cwd=str(REPO)).result()


def run_chromium(spec: ModelSpec, threads: int, prompts: dict[str, Any],
                 timeout: float = 900.0) -> dict[str, Any]:
    """One page load: wllama loads the model, then the pp and tg tests (see the module doc)."""
    config = {"wasmUrl": "/" + str(WLLAMA_WASM.relative_to(REPO)),
              "modelUrl": "/__bench__/model.gguf", "nThreads": threads, "nCtx": spec.n_ctx,
              "nBatch": N_BATCH, "promptText": prompts["text"], "tgText": prompts["tg_text"],
              "nGen": spec.n_gen, "reps": spec.reps}
    routes: dict[str, bytes | Path] = {"/__bench__/config.json": json.dumps(config).encode(),
                                       "/__bench__/model.gguf": spec.file}
    res = wasm.run_bench_page(PAGE, routes, timeout, name="wllama", what="wllama in Chromium")
    rt = res["runtime"]
    if rt["n_threads"] != threads or rt["multithread"] != (threads > 1):
        raise BenchError(f"wllama ran {rt['n_threads']} thread(s) (multithread "
                         f"{rt['multithread']}, crossOriginIsolated {rt['crossOriginIsolated']}), "
                         f"asked for {threads}")
    for field, n in (("pp_server", len(prompts["ids"])), ("tg_server", len(prompts["tg_ids"]))):
        for t in res[field]:
            if t and t.get("prompt_n") != n:
                raise BenchError(f"wllama evaluated {t.get('prompt_n')} prompt tokens, not {n}")
    return res


def _add(entry: dict[str, Any], res: dict[str, Any], n_prompt: int) -> None:
    entry.setdefault("pp_tps", []).extend(n_prompt / s for s in res["pp_s"])
    entry.setdefault("tg_tps", []).extend(
        n / s for n, s in zip(res["tg_tokens"], res["tg_s"], strict=True))
    entry.setdefault("tg_tokens", []).extend(res["tg_tokens"])
    entry.setdefault("load_s", []).append(res.get("load_s"))
    for key, field in (("pp_server_tps", "pp_server"), ("tg_server_tps", "tg_server")):
        rate = "prompt_per_second" if key.startswith("pp") else "predicted_per_second"
        entry.setdefault(key, []).extend(t[rate] for t in res.get(field) or [] if t)
    for key in ("runtime", "system_info", "tg_text"):
        if res.get(key):
            entry[key] = res[key]


def measure(spec: ModelSpec, rounds: int, threads: list[int], *, with_llamart: bool = True,
            log=print) -> dict[str, Any]:
    """Rounds of wllama and (``with_llamart``, when its WebAssembly builds are there) llamart's
    Pyodide + Chromium (its pthreads module, which an isolated page loads) at each thread
    count, on the same prompt ids, rotated each round."""
    reason = missing()
    if reason:
        log(f"bench: wllama skipped: {reason}")
        return {"unavailable": reason}
    prompts = text_prompts(spec)
    prompt = prompts["ids"]
    runners: dict[str, Any] = {
        f"wllama {t}": (lambda t=t: run_chromium(spec, t, prompts)) for t in threads}
    out: dict[str, Any] = {"model": spec.key, "module": module_info(), "threads": {},
                           "llamart": {}, "prompt": prompts}
    llamart_missing = wasm.missing() if with_llamart else "not selected"
    if llamart_missing is None:
        for t in threads:
            runners[f"llamart {t}"] = (
                lambda t=t: wasm.run_chromium(spec, prompt, "threads", t))
    else:
        out["llamart"] = {"unavailable": llamart_missing}
    names = list(runners)
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            started = time.monotonic()
            system, t = name.split()
            entry = out["llamart" if system == "llamart" else "threads"].setdefault(t, {})
            try:
                res = runners[name]()
            except (BenchError, Exception) as e:  # keep going: report what failed
                log(f"bench: {name} failed on {spec.key}: {e}")
                entry.setdefault("errors", []).append(str(e)[:800])
                continue
            _add(entry, res, spec.n_prompt)
            log(f"bench: wllama {spec.key} round {r + 1}/{rounds} {name}: "
                f"pp {max(entry['pp_tps']):.1f} t/s, tg {max(entry['tg_tps']):.1f} t/s "
                f"({time.monotonic() - started:.1f} s)")
    return out
