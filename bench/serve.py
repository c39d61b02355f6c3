"""The servers over HTTP: ``python -m bench.serve [--write]``.

``llamart serve`` (--parallel 8), llama-server (built from the same pinned source with the
same CPU variants, -np 8) and llama-cpp-python's server (the same libraries; one request at a
time by design) on SmolLM2 Q4_1, each on 127.0.0.1, driven by the same client (tools/load.py:
the real ``openai`` client, streamed chat completions, greedy, 32 tokens) at 1, 4, 8 and 16
concurrent clients, 32 requests each: requests/s, time to first token and aggregate completion
tokens/s. llamart and llama-server also with the base model and the pirate adapter mixed
(llamart by model name, llama-server by its per-request ``lora`` field). Writes
.cache/bench/serve.json and docs/benchmarks.md's "Servers" section.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
from pathlib import Path
from typing import Any

from tools import load

from . import machine
from .doc_section import publish
from .parallel import LlamaServer, pirate_adapter

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / ".cache" / "bench" / "serve.json"
CLIENTS = (1, 4, 8, 16)


def _measure(url: str, models: list[str], clients: int,
             bodies: list[dict[str, Any] | None] | None = None,
             requests: int = 32) -> dict[str, Any]:
    # llama-server drops an idle keep-alive connection now and then: sent again (counted)
    return asyncio.run(load.run(url, models, clients, requests, 32, "none", bodies, retries=2))


def _stop(proc: Any) -> None:
    proc.terminate()
    proc.wait(30)


def _llama_cpp_python_server(model: str, threads: int) -> tuple[Any, str]:
    """llama-cpp-python's server (its defaults, but requests queue instead of cancelling the
    one streaming: ``--interrupt_requests False``) on a free 127.0.0.1 port."""
    import subprocess

    from .parallel import _free_port
    from .systems import _lcpp_env, ensure_llama_cpp_python, ensure_llama_server

    python = ensure_llama_cpp_python(print, server=True)
    port = _free_port()
    script = Path(__file__).with_name("worker_llama_cpp_python_server.py")
    env = {**_lcpp_env(), "LLAMA_CPP_LIB_PATH": str(Path(ensure_llama_server(print)).parent)}
    proc = subprocess.Popen([str(python), str(script), "--model", model, "--n_ctx", "4096",
                             "--n_threads", str(threads), "--n_threads_batch", str(threads),
                             "--host", "127.0.0.1", "--port", str(port),
                             "--interrupt_requests", "False"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    load.wait_ready(proc, url + "/v1/models", "llama-cpp-python's server")
    return proc, url


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--rounds", type=int, default=3,
                    help="rounds per row, the servers taking turns (the median is reported)")
    ap.add_argument("--systems", default="llamart,llama-server,llama-cpp-python",
                    help="comma-separated: which servers to run (default: all three)")
    args = ap.parse_args()
    args.systems = args.systems.split(",")
    from llamart import pinned_models

    from .systems import ensure_llama_server

    model = str(pinned_models.cached_path("smollm2"))
    name = Path(model).stem
    data: dict[str, Any] = {"machine": machine.describe(), "threads": args.threads,
                            "rounds": args.rounds, "load_average": machine.load_average(),
                            "rows": {}}

    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory())
        ad = pirate_adapter(model, tmp)
        rows: dict[str, tuple[str, list[str], list[dict[str, Any] | None] | None]] = {}
        if "llamart" in args.systems:
            proc, url = load.start_server(model, [f"pirate={ad}"],
                                          ["--parallel", "8", "--n-threads", str(args.threads),
                                           "--n-ctx", "4096", "--max-queue", "64"])
            stack.callback(_stop, proc)
            rows["llamart serve, base"] = (url, [name], None)
            rows["llamart serve, base + pirate"] = (url, [name, "pirate"], None)
        if "llama-server" in args.systems:
            # two instances: without the adapter for the base rows (with one loaded, even
            # unapplied, llama-server measured ~25% slower here), with it for the mixed rows
            binary = str(ensure_llama_server(print))
            for label, adapter, bodies in (
                    ("llama-server, base", None, None),
                    ("llama-server, base + pirate", ad,
                     [None, {"lora": [{"id": 0, "scale": 1.0}]}])):
                server = LlamaServer(binary, model, 8, args.threads, adapter)
                stack.callback(server.close)
                rows[label] = (f"http://127.0.0.1:{server.port}", [name], bodies)
        slow: dict[str, tuple[str, list[str], None]] = {}
        if "llama-cpp-python" in args.systems:
            proc, url = _llama_cpp_python_server(model, args.threads)
            stack.callback(_stop, proc)
            slow["llama-cpp-python server, base"] = (url, [name], None)
        for url, models, bodies in {**rows, **slow}.values():  # warm-up
            _measure(url, models[:1], 2, bodies and bodies[:1], 8)
        labels = list(rows)
        for c in CLIENTS:  # the servers take turns, rotated each round; the median is kept
            runs: dict[str, list[dict[str, Any]]] = {k: [] for k in labels}
            for r in range(args.rounds):
                for label in labels[r % len(labels):] + labels[:r % len(labels)]:
                    url, models, bodies = rows[label]
                    print(f"bench.serve: {label} x{c} (round {r + 1}/{args.rounds})", flush=True)
                    runs[label].append(_measure(url, models, c, bodies))
            for label, got in runs.items():
                got.sort(key=lambda x: x["tokens_per_s"])
                data["rows"].setdefault(label, {})[str(c)] = {
                    **got[len(got) // 2], "rounds_tokens_per_s": [x["tokens_per_s"] for x in got]}
            for label, (url, models, bodies) in slow.items():  # one request at a time anyway
                print(f"bench.serve: {label} x{c}", flush=True)
                data["rows"].setdefault(label, {})[str(c)] = _measure(url, models, c, bodies, 8)
    publish(OUT, data, render(data), "serve", args.write)


def render(data: dict[str, Any]) -> str:
    lines = ["## Servers over HTTP — `python -m bench.serve --write`", "",
             f"Host: {data['machine']['cpu']}, {data['threads']} threads each, SmolLM2 Q4_1, "
             "the openai client streaming chat completions (32 requests of 32 greedy tokens per "
             f"row; the servers run side by side and take turns, {data.get('rounds', 1)} rounds "
             "rotated, the median kept; llama-cpp-python 8 requests, one round), load average "
             f"{data['load_average']:.2f} at the start. llamart serve "
             "`--parallel 8`; llama-server `-np 8`, built from the same pinned source with the "
             "same CPU variants; llama-cpp-python's server on the same libraries, its defaults "
             "but `--interrupt_requests False` (else a new request cancels the one streaming). "
             "Mixed rows alternate the base model and the pirate adapter (llamart: by model "
             "name; llama-server: its per-request `lora` field). Each server samples with its "
             "own defaults at temperature 0 (llamart repeat_penalty 1.1, as llama-cpp-python's "
             "server; llama-server 1.0). A request whose connection the server dropped is sent "
             "again, at most twice (counted in ok as retried; its time counts).", "",
             "| server | clients | ok | requests/s | TTFT p50 s | TTFT p95 s | latency p95 s "
             "| tokens/s |",
             "|---|---|---|---|---|---|---|---|"]
    for mix, rows in data["rows"].items():
        for c, r in rows.items():
            again = f" ({r['retried']} retried)" if r.get("retried") else ""
            lines.append(f"| {mix} | {c} | {r['ok']}/{r['requests']}{again} | "
                         f"{r['requests_per_s']} | "
                         f"{r['ttft_p50_s']} | {r['ttft_p95_s']} | {r['latency_p95_s']} | "
                         f"{r['tokens_per_s']} |")
    lines.append("")
    for ours, peer in (("llamart serve, base", "llama-server, base"),
                       ("llamart serve, base + pirate", "llama-server, base + pirate"),
                       ("llamart serve, base", "llama-cpp-python server, base")):
        a, b = data["rows"].get(ours), data["rows"].get(peer)
        if a and b:
            ratios = ", ".join(f"{c} clients {a[c]['tokens_per_s'] / b[c]['tokens_per_s']:.2f}"
                               for c in a if c in b and b[c]["tokens_per_s"])
            lines.append(f"- {ours} / {peer}, aggregate tokens/s: {ratios}.")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
