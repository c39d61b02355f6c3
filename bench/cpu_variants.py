"""What each ggml CPU variant is worth on this host: ``python -m bench.cpu_variants``.

The AMX variant (sapphirerapids) against the best AVX-512 one (and x64 as the floor), forced
with LLAMART_CPU_VARIANT in a child process each, on the real models, through llamart's public
API: prompt speed (a ~300-token prompt from a clean cache) and generation speed (64 greedy
tokens). Variants alternate round by round; each figure is the best of its rounds; ratios are
within this one run. Also the agreement of the next-token logits with x64's (max |diff| over
max |logit|). Writes .cache/bench/cpu_variants.json and the "CPU variants" section of
docs/benchmarks.md (between its markers).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from . import machine
from .doc_section import publish

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / ".cache" / "bench" / "cpu_variants.json"

_CHILD = r"""
import json, sys, time
from llamart import Engine
path, n_prompt, n_gen, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
e = Engine('native')
e.load_model(path, n_ctx=1024, n_batch=512, n_threads=threads)
text = "The history of the city is long and full of events. " * 60
prompt = e.tokenize(text)[:n_prompt]
e.logits(prompt[:8])
e.reset(); t = time.perf_counter(); logits = e.logits(prompt); pp = time.perf_counter() - t
t = time.perf_counter()
g = e.generate(prompt[:1], max_tokens=n_gen, temperature=0, repeat_penalty=1.0)
n = len(list(g)) and g.usage["completion_tokens"]; tg = time.perf_counter() - t
print(json.dumps({"pp_tps": n_prompt / pp, "tg_tps": n / tg, "info": e.capabilities.system_info,
                  "logits": list(logits)[:: max(1, len(logits) // 4096)]}))
"""


def run(variant: str, model: str, threads: int) -> dict:
    env = {**os.environ, "LLAMART_CPU_VARIANT": variant, "GGML_NO_BACKTRACE": "1"}
    out = subprocess.run([sys.executable, "-c", _CHILD, model, "300", "64", str(threads)],
                         capture_output=True, text=True, env=env, timeout=600)
    if out.returncode != 0:
        raise SystemExit(f"{variant} on {model} failed ({out.returncode}):\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def best_avx512(table: list[tuple[str, int, str]]) -> str | None:
    """The best-scoring runnable variant without AMX (ggml's scores put AMX first)."""
    for name, score, _status in table:
        if score > 0 and name != "sapphirerapids" and name in (
                "zen4", "cooperlake", "icelake", "cascadelake", "cannonlake", "skylakex"):
            return name
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--write", action="store_true", help="write docs/benchmarks.md's section")
    args = ap.parse_args()
    from llamart import pinned_models
    from llamart.bindings.native import NativeBackend

    table = NativeBackend().cpu_variants()
    runnable = {n for n, s, _ in table if s > 0}
    variants = [v for v in ("sapphirerapids", best_avx512(table), "x64") if v in runnable]
    models = {name: str(pinned_models.cached_path(name)) for name in ("smollm2", "gemma3-270m")
              if pinned_models.cached_path(name)}
    results: dict[str, dict[str, dict]] = {m: {} for m in models}
    started = time.time()
    for r in range(args.rounds):
        for m, path in models.items():
            for v in variants:
                print(f"bench.cpu_variants: round {r + 1}/{args.rounds} {m} {v}", flush=True)
                got = run(v, path, args.threads)
                cur = results[m].setdefault(v, {"pp_tps": 0.0, "tg_tps": 0.0})
                cur["pp_tps"] = max(cur["pp_tps"], got["pp_tps"])
                cur["tg_tps"] = max(cur["tg_tps"], got["tg_tps"])
                cur["logits"] = got["logits"]
    for m in results:
        ref = results[m].get("x64", {}).get("logits")
        for cur in results[m].values():
            lg = cur.pop("logits")
            if ref:
                scale = max(abs(x) for x in ref)
                diff = max(abs(a - b) for a, b in zip(lg, ref, strict=True))
                cur["logit_diff_vs_x64"] = diff / scale
    data = {"machine": machine.describe(), "threads": args.threads, "rounds": args.rounds,
            "variants": variants, "results": results, "seconds": time.time() - started,
            "load_average": machine.load_average()}
    publish(OUT, data, render(data), "cpu-variants", args.write)


def render(data: dict) -> str:
    lines = ["## CPU variants (AMX) — `python -m bench.cpu_variants --write`", "",
             f"Host: {data['machine']['cpu']}, {data['threads']} threads, best of "
             f"{data['rounds']} alternated rounds; prompt ~300 tokens, 64 generated (greedy). "
             f"Ratios are against the best AVX-512 variant in this same run.", "",
             "| model | variant | prompt tok/s | x | generation tok/s | x | logits vs x64 |",
             "|---|---|---|---|---|---|---|"]
    for m, res in data["results"].items():
        base = res.get(data["variants"][1]) if len(data["variants"]) > 2 else None
        for v, cur in res.items():
            pp = cur["pp_tps"] / base["pp_tps"] if base else 1.0
            tg = cur["tg_tps"] / base["tg_tps"] if base else 1.0
            lines.append(f"| {m} | {v} | {cur['pp_tps']:.0f} | {pp:.2f} | {cur['tg_tps']:.1f} | "
                         f"{tg:.2f} | {cur.get('logit_diff_vs_x64', 0):.1e} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
