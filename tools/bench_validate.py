"""What llamart's GGUF validation costs next to loading the model.

    python tools/bench_validate.py MODEL.gguf [MODEL2.gguf ...] [--repeat 7] [--n-ctx 512]
                                  [--backend native] [--no-load]

For each file, ``--repeat`` rounds (interleaved: validate, then a full Engine load and
unload) are timed and the medians printed: validation ms (``gguf_reader.validate_model``,
pure Python), Engine load ms (``Engine.load_model``, which includes that validation), and
validation as a share of the load.  Vocab-only files (no tensors) are validated with
``allow_no_tensors`` and not loaded.  Run it on a quiet machine, or take several runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from llamart import gguf_reader  # noqa: E402


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1000.0


def bench_file(path: str, repeat: int, n_ctx: int, backend: str | None, load: bool
               ) -> dict[str, object]:
    header = gguf_reader.read_header(path)
    vocab_only = not header.tensors
    validate: list[float] = []
    loads: list[float] = []
    engine = None
    if load and not vocab_only:
        from llamart import Engine

        engine = Engine(backend=backend) if backend else Engine()
    try:
        for _ in range(repeat):
            t0 = time.perf_counter()
            gguf_reader.validate_model(path, allow_no_tensors=vocab_only)
            validate.append(_ms(t0))
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
    }
    if loads:
        ld = statistics.median(loads)
        out.update(load_ms=round(ld, 1), load_ms_all=[round(x, 1) for x in loads],
                   validate_share=f"{100 * v / ld:.1f}%")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--n-ctx", type=int, default=512)
    ap.add_argument("--backend", default=None, help="Engine backend (default: by platform)")
    ap.add_argument("--no-load", action="store_true", help="time validation only")
    ap.add_argument("--json", action="store_true", help="print one JSON line per file")
    a = ap.parse_args()
    for path in a.models:
        r = bench_file(path, a.repeat, a.n_ctx, a.backend, not a.no_load)
        if a.json:
            print(json.dumps(r))
            continue
        line = (f"{r['file']} ({r['size_mb']} MB, {r['n_tokens']} tokens, {r['n_tensors']} "
                f"tensors): validate {r['validate_ms']} ms")
        if "load_ms" in r:
            line += f", Engine load {r['load_ms']} ms (validation = {r['validate_share']})"
        print(line)
        print(f"  validate ms: {r['validate_ms_all']}"
              + (f"\n  load ms:     {r['load_ms_all']}" if "load_ms" in r else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
