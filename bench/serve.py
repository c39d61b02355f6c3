"""The servers over HTTP: ``python -m bench.serve [--write]``.

``llamart serve`` (--parallel 8) and llama-server (built from the same pinned source with the
same CPU variants, -np 8) on SmolLM2 Q4_1, each on 127.0.0.1, driven by the same client
(tools/load.py: the real ``openai`` client, streamed chat completions, greedy, 32 tokens) at 1,
4, 8 and 16 concurrent clients, 32 requests each: requests/s, time to first token and aggregate
completion tokens/s. llamart also with the base model and the pirate adapter mixed (by model
name). Writes .cache/bench/serve.json and docs/benchmarks.md's "Servers" section.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
from pathlib import Path
from typing import Any

from tools import load

from . import machine
from .doc_section import replace_section
from .parallel import LlamaServer, pirate_adapter

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / ".cache" / "bench" / "serve.json"
CLIENTS = (1, 4, 8, 16)


def _measure(url: str, models: list[str], clients: int) -> dict[str, Any]:
    return asyncio.run(load.run(url, models, clients, 32, 32, "none"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    from llamart import pinned_models

    from .systems import ensure_llama_server

    model = str(pinned_models.cached_path("smollm2"))
    name = Path(model).stem
    data: dict[str, Any] = {"machine": machine.describe(), "threads": args.threads,
                            "load_average": machine.load_average(), "rows": {}}
    with tempfile.TemporaryDirectory() as tmp:
        ad = pirate_adapter(model, tmp)
        proc, url = load.start_server(model, [f"pirate={ad}"],
                                      ["--parallel", "8", "--n-threads", str(args.threads),
                                       "--n-ctx", "4096", "--max-queue", "64"])
        try:
            _measure(url, [name], 2)  # warm-up
            for mix, models in (("llamart serve, base", [name]),
                                ("llamart serve, base + pirate", [name, "pirate"])):
                for c in CLIENTS:
                    print(f"bench.serve: {mix} x{c}", flush=True)
                    data["rows"].setdefault(mix, {})[str(c)] = _measure(url, models, c)
        finally:
            proc.terminate()
            proc.wait(30)
        server = LlamaServer(str(ensure_llama_server(print)), model, 8, args.threads, None)
        try:
            peer = f"http://127.0.0.1:{server.port}"
            _measure(peer, [name], 2)
            for c in CLIENTS:
                print(f"bench.serve: llama-server x{c}", flush=True)
                data["rows"].setdefault("llama-server, base", {})[str(c)] = \
                    _measure(peer, [name], c)
        finally:
            server.close()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(data, indent=1))
    text = render(data)
    print(text)
    if args.write:
        replace_section(ROOT / "docs" / "benchmarks.md", "serve", text)


def render(data: dict[str, Any]) -> str:
    lines = ["## Servers over HTTP — `python -m bench.serve --write`", "",
             f"Host: {data['machine']['cpu']}, {data['threads']} threads each, 8 slots each, "
             "SmolLM2 Q4_1, the openai client streaming chat completions (32 requests of 32 "
             f"greedy tokens per row), load average {data['load_average']:.2f} at the start. "
             "llama-server: built from the same pinned source with the same CPU variants.", "",
             "| server | clients | ok | requests/s | TTFT p50 s | TTFT p95 s | tokens/s |",
             "|---|---|---|---|---|---|---|"]
    for mix, rows in data["rows"].items():
        for c, r in rows.items():
            lines.append(f"| {mix} | {c} | {r['ok']}/{r['requests']} | {r['requests_per_s']} | "
                         f"{r['ttft_p50_s']} | {r['ttft_p95_s']} | {r['tokens_per_s']} |")
    ours, peer = data["rows"].get("llamart serve, base"), data["rows"].get("llama-server, base")
    if ours and peer:
        ratios = ", ".join(f"{c} clients: {ours[c]['tokens_per_s'] / peer[c]['tokens_per_s']:.2f}"
                           for c in ours if c in peer and peer[c]["tokens_per_s"])
        lines += ["", f"llamart serve / llama-server aggregate tokens/s: {ratios}."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
