"""What llamart's GGUF validation costs next to loading the model.

    python tools/bench_validate.py MODEL.gguf [MODEL2.gguf ...] [--repeat 7] [--n-ctx 512]
                                  [--backend native] [--no-load] [--baseline OLD_READER.py]
    python tools/bench_validate.py MODEL.gguf ... --pyodide   # the same in Pyodide under Node

For each file, ``--repeat`` rounds (interleaved: validate, then a full Engine load and
unload) are timed and the medians printed: validation ms (``llamart.gguf.validate_model``, with
big string arrays walked by ``lm_gguf_scan_strings`` in libllamart, or in the WebAssembly
module with ``--pyodide``), the same with the Python walk (no ``scan``), Engine load
ms (``Engine.load_model``, which includes that validation), and validation as a share of the
load.  Vocab-only files (no tensors) are validated with
``allow_no_tensors`` and not loaded.  ``--baseline`` also times ``validate_model`` of an
earlier one-file reader (e.g. ``git show cd25226:llamart/gguf_reader.py > /tmp/old_reader.py``,
the last one before llamart/gguf/) in the same rounds.  Run it on a quiet machine, or take
several runs.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import time
from types import ModuleType

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from llamart import gguf  # noqa: E402
from llamart.gguf.c_scan import c_string_scan  # noqa: E402


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000.0


def load_reader(path: str) -> ModuleType:
    """Import an earlier one-file GGUF reader (llamart/gguf_reader.py) from a file."""
    spec = importlib.util.spec_from_file_location("baseline_gguf_reader", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"{path}: cannot import")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def bench_file(path: str, repeat: int, n_ctx: int, backend: str | None, load: bool,
               baseline: ModuleType | None = None) -> dict[str, object]:
    scan = c_string_scan()
    header = gguf.read_header(path, scan=scan)
    vocab_only = not header.tensors
    validate: list[float] = []
    before: list[float] = []
    python_only: list[float] = []
    loads: list[float] = []
    engine = None
    if load and not vocab_only:
        from llamart import Engine

        engine = Engine(backend=backend) if backend else Engine()
    try:
        for _ in range(repeat):
            t0 = time.perf_counter()
            gguf.validate_model(path, allow_no_tensors=vocab_only, scan=scan)
            validate.append(_ms(t0))
            t0 = time.perf_counter()
            gguf.validate_model(path, allow_no_tensors=vocab_only)
            python_only.append(_ms(t0))
            if baseline is not None:
                t0 = time.perf_counter()
                baseline.validate_model(path, allow_no_tensors=vocab_only)
                before.append(_ms(t0))
            if engine is not None:
                t0 = time.perf_counter()
                engine.load_model(path, n_ctx=n_ctx, n_threads=1)
                loads.append(_ms(t0))
                engine.unload_model()
    finally:
        if engine is not None:
            engine.dispose()
    v = statistics.median(validate)
    out: dict[str, object] = {
        "file": os.path.basename(path),
        "size_mb": round(os.path.getsize(path) / 1e6, 1),
        "n_tokens": len(header.kv.get("tokenizer.ggml.tokens") or ()),  # type: ignore[arg-type]
        "n_tensors": len(header.tensors),
        "validate_ms": round(v, 1),
        "validate_ms_all": [round(x, 1) for x in validate],
        "c_walk": scan is not None,
        "python_walk_ms": round(statistics.median(python_only), 1),
    }
    if before:
        out.update(baseline_ms=round(statistics.median(before), 1),
                   baseline_ms_all=[round(x, 1) for x in before])
    if loads:
        ld = statistics.median(loads)
        out.update(load_ms=round(ld, 1), load_ms_all=[round(x, 1) for x in loads],
                   validate_share=f"{100 * v / ld:.1f}%")
    return out


def pyodide_main(models: list[str], repeat: int, n_ctx: int) -> int:
    """Medians of bench.llamart_job.validate run in Pyodide under Node (bench/wasm.py)."""
    from bench import wasm

    why = wasm.missing()
    if why:
        raise SystemExit(f"cannot run in Pyodide: {why}")
    for path in models:
        r = wasm.run_node_job({"kind": "validate", "backend": None, "model": os.path.abspath(path),
                               "n_ctx": n_ctx, "reps": repeat})
        v, p, ld = (statistics.median(r[k]) * 1000 for k in ("validate_s", "python_walk_s",
                                                             "load_s"))
        print(f"{os.path.basename(path)} in Pyodide/Node (C string walk: {r['c_walk']}): "
              f"validate {v:.1f} ms, Engine load {ld:.1f} ms (validation = {100 * v / ld:.1f}%); "
              f"Python string walk {p:.1f} ms")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--n-ctx", type=int, default=512)
    ap.add_argument("--backend", default=None, help="Engine backend (default: by platform)")
    ap.add_argument("--no-load", action="store_true", help="time validation only")
    ap.add_argument("--baseline", help="an earlier llamart/gguf_reader.py to time as well")
    ap.add_argument("--json", action="store_true", help="print one JSON line per file")
    ap.add_argument("--pyodide", action="store_true",
                    help="validate and load with the WebAssembly backend in Pyodide under Node")
    a = ap.parse_args()
    if a.pyodide:
        return pyodide_main(a.models, a.repeat, a.n_ctx)
    baseline = load_reader(a.baseline) if a.baseline else None
    for path in a.models:
        r = bench_file(path, a.repeat, a.n_ctx, a.backend, not a.no_load, baseline)
        if a.json:
            print(json.dumps(r))
            continue
        line = (f"{r['file']} ({r['size_mb']} MB, {r['n_tokens']} tokens, {r['n_tensors']} "
                f"tensors): validate {r['validate_ms']} ms")
        if "load_ms" in r:
            line += f", Engine load {r['load_ms']} ms (validation = {r['validate_share']})"
        line += f"; Python string walk {r['python_walk_ms']} ms"
        if "baseline_ms" in r:
            line += f"; baseline reader {r['baseline_ms']} ms"
        print(line)
        print(f"  validate ms: {r['validate_ms_all']}"
              + (f"\n  load ms:     {r['load_ms_all']}" if "load_ms" in r else "")
              + (f"\n  baseline ms: {r['baseline_ms_all']}" if "baseline_ms" in r else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
