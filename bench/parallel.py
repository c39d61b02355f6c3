"""The parallel engine's speed: ``python -m bench.parallel [--write]``.

One Engine per model loaded with n_parallel=8 serves 1, 2, 4 and 8 concurrent greedy streams
(threads; distinct prompts; 64 tokens each) under three adapter mixes: one set (all the same),
two sets, and the base plus three adapter sets (SmolLM2: the shipped pirate adapter at several
scales, each scale its own set). Reports aggregate generated tokens/s, mean time to the first
token, and the mixed/one-set ratio; then what restoring an evicted conversation from the prompt
cache costs against re-evaluating it. Same run, same machine: ratios, not absolute times.
Writes .cache/bench/parallel.json, docs/benchmarks.md's "Parallel engine" section and
docs/bench_parallel.png.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import machine
from .doc_section import publish

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / ".cache" / "bench" / "parallel.json"
PLOT = ROOT / "docs" / "bench_parallel.png"
TOPICS = ["the sea", "a mountain village", "a robot", "the moon", "an old library", "a storm",
          "a desert city", "a lost key"]
# a raw completion prompt every adapter set continues (an instruction as raw text made the base
# SmolLM2 end at once)
PROMPT = "Once upon a time, in a small house by {topic}, there lived"


def pirate_adapter(base: str, out_dir: str) -> str:
    """The shipped pirate PEFT adapter converted for ``base`` (llamart lora convert)."""
    from llamart.lora import convert

    out = Path(out_dir) / "pirate.gguf"
    convert(ROOT / "llamart" / "data" / "pirate_lora", base, out)
    return str(out)


def _concurrently(n: int, one: Callable[[int], tuple[float, int]]) -> dict[str, float]:
    """Run ``one(i)`` (-> seconds to the first token, tokens) for i < n on n threads at once:
    aggregate tokens/s over the wall time, mean time to first token, tokens."""
    ttft = [0.0] * n
    made = [0] * n
    start = time.perf_counter()

    def run(i: int) -> None:
        ttft[i], made[i] = one(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    return {"tps": sum(made) / wall, "ttft": sum(ttft) / max(1, n), "tokens": sum(made)}


def run_mix(engine: Any, n: int, sets: list[dict[str, float] | None]) -> dict[str, float]:
    def one(i: int) -> tuple[float, int]:
        t0 = time.perf_counter()
        first = None
        gen = engine.generate(PROMPT.format(topic=TOPICS[i % len(TOPICS)]),
                              max_tokens=64, temperature=0, repeat_penalty=1.0,
                              lora=sets[i % len(sets)])
        for _chunk in gen:
            if first is None:
                first = time.perf_counter() - t0
        return (first if first is not None else time.perf_counter() - t0,
                gen.usage["completion_tokens"])

    return _concurrently(n, one)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LlamaServer:
    """llama-server built from the same pinned source (bench.systems.ensure_llama_server),
    on 127.0.0.1, with ``-np`` slots; the adapter (if any) loaded at start, unapplied."""

    def __init__(self, binary: str, model: str, n_parallel: int, threads: int,
                 adapter: str | None) -> None:
        import subprocess

        self.port = _free_port()
        cmd = [binary, "-m", model, "-np", str(n_parallel), "-c", "4096", "-t", str(threads),
               "--host", "127.0.0.1", "--port", str(self.port), "--no-webui"]
        if adapter:
            cmd += ["--lora", adapter, "--lora-init-without-apply"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if self._get("/health").get("status") == "ok":
                    return
            except OSError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama-server exited ({self.proc.returncode})")
            time.sleep(0.3)
        raise RuntimeError("llama-server did not start in 120 s")

    def _get(self, path: str) -> dict[str, Any]:
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        conn.request("GET", path)
        return json.loads(conn.getresponse().read() or b"{}")

    def stream(self, prompt: str, scale: float | None) -> tuple[float, int]:
        """(seconds to the first token, tokens) of one greedy streamed completion."""
        import http.client

        body: dict[str, Any] = {"prompt": prompt, "n_predict": 64, "temperature": 0,
                                "repeat_penalty": 1.0, "stream": True, "cache_prompt": False}
        if scale is not None:
            body["lora"] = [{"id": 0, "scale": scale}]
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=600)
        t0 = time.perf_counter()
        conn.request("POST", "/completion", json.dumps(body),
                     {"Content-Type": "application/json"})
        resp = conn.getresponse()
        first, n = None, 0
        for raw in resp:
            line = raw.decode().strip()
            if not line.startswith("data: "):
                continue
            msg = json.loads(line[6:])
            if msg.get("content") and first is None:
                first = time.perf_counter() - t0
            if msg.get("stop"):
                n = int(msg.get("timings", {}).get("predicted_n", n))
                break
        return first or (time.perf_counter() - t0), n

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except Exception:
            self.proc.kill()


def run_server_mix(server: LlamaServer, n: int, scales: list[float | None]) -> dict[str, float]:
    return _concurrently(n, lambda i: server.stream(PROMPT.format(topic=TOPICS[i % len(TOPICS)]),
                                                    scales[i % len(scales)]))


def restore_cost(engine: Any) -> dict[str, float]:
    """One returning turn: restored from the prompt cache vs evaluated from scratch."""
    history = "".join(f"Turn {i}: tell me more about the history of the old city. " * 3
                      for i in range(12))
    engine.complete(history, max_tokens=4, temperature=0)
    for k in range(10):  # every slot is reused: the conversation is only in the prompt cache
        engine.complete(f"filler {k} " * 40, max_tokens=2, temperature=0)
    t = time.perf_counter()
    gen = engine.generate(history + " And then?", max_tokens=1, temperature=0)
    gen.text()
    restored = time.perf_counter() - t
    cached = gen.usage["cached_tokens"]
    engine.reset()  # no slot state, no prompt cache: the whole history again
    t = time.perf_counter()
    engine.complete(history + " And then?", max_tokens=1, temperature=0)
    fresh = time.perf_counter() - t
    return {"restored_s": restored, "reevaluated_s": fresh, "cached_tokens": cached,
            "history_tokens": len(engine.tokenize(history))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--llama-server", action="store_true",
                    help="also llama-server from the same pinned source (-np 8, HTTP)")
    args = ap.parse_args()
    from llamart import Engine, pinned_models

    data: dict[str, Any] = {"machine": machine.describe(), "threads": args.threads,
                            "load_average": machine.load_average(), "models": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("smollm2", "gemma3-270m"):
            path = pinned_models.cached_path(name)
            if path is None:
                continue
            engine = Engine()
            engine.load_model(str(path), n_ctx=4096, n_threads=args.threads, n_parallel=8)
            if name == "smollm2":
                ad = pirate_adapter(str(path), tmp)
                mixes = {"one set": [{ad: 1.0}], "two sets": [{}, {ad: 1.0}],
                         "base + 3 sets": [{}, {ad: 1.0}, {ad: 0.5}, {ad: 0.75}]}
            else:
                mixes = {"one set": [{}]}
            res: dict[str, Any] = {}
            run_mix(engine, 2, [{}])  # warm-up
            for mix, sets in mixes.items():
                for n in (1, 2, 4, 8):
                    print(f"bench.parallel: {name} {mix} x{n}", flush=True)
                    res.setdefault(mix, {})[str(n)] = run_mix(engine, n, sets)
            res["restore"] = restore_cost(engine)
            engine.dispose()
            if args.llama_server:
                from .systems import ensure_llama_server

                binary = str(ensure_llama_server(print))
                adapter = ad if name == "smollm2" else None
                for mix, scales in (("one set", [1.0 if adapter else None]),
                                    ("two sets", [0.0, 1.0] if adapter else None)):
                    if scales is None:
                        continue
                    for n in (1, 2, 4, 8):
                        print(f"bench.parallel: llama-server {name} {mix} x{n}", flush=True)
                        server = LlamaServer(binary, str(path), 8, args.threads, adapter)
                        try:
                            server.stream("warm up", scales[0])
                            res.setdefault("llama-server " + mix, {})[str(n)] = \
                                run_server_mix(server, n, scales)
                        finally:
                            server.close()
            data["models"][name] = res
    if args.write:
        plot(data)
    publish(OUT, data, render(data), "parallel", args.write)


def render(data: dict[str, Any]) -> str:
    lines = ["## Parallel engine — `python -m bench.parallel --write`", "",
             f"Host: {data['machine']['cpu']}, {data['threads']} threads, n_parallel=8, greedy "
             "64-token streams, one run. x1 = the same mix at 1 stream; mixed/one = this "
             "mix's aggregate over the one-set figure at the same N (of the same system). "
             "llama-server rows: built from the same pinned source with the same CPU variants "
             "(-np 8, /completion streamed over HTTP, cache_prompt false; the adapter loaded "
             "at start, per-request scales; its 'two sets' = scale 0 and 1).", "",
             "| model | mix | streams | aggregate tok/s | x1 | mixed/one | mean TTFT s |",
             "|---|---|---|---|---|---|---|"]
    for model, res in data["models"].items():
        for mix, rows in res.items():
            if mix == "restore":
                continue
            one = res["llama-server one set" if mix.startswith("llama-server") else "one set"]
            for n, r in rows.items():
                lines.append(f"| {model} | {mix} | {n} | {r['tps']:.1f} | "
                             f"{_ratio(r['tps'], rows['1']['tps'])} | "
                             f"{_ratio(r['tps'], one[n]['tps'])} | {r['ttft']:.3f} |")
    for model, res in data["models"].items():
        for mix in ("one set", "two sets"):
            peer = res.get("llama-server " + mix)
            if peer and mix in res:
                ratios = ", ".join(f"x{n}: {_ratio(res[mix][n]['tps'], peer[n]['tps'])}"
                                   for n in peer if n in res[mix])
                lines.append(f"\n{model}, {mix}: llamart / llama-server aggregate = {ratios}")
    lines += ["", "Returning to a conversation evicted to the prompt cache (one turn, 1 token):",
              "",
              "| model | history tokens | reused | restored s | re-evaluated s | x |",
              "|---|---|---|---|---|---|"]
    for model, res in data["models"].items():
        r = res["restore"]
        lines.append(f"| {model} | {r['history_tokens']} | {r['cached_tokens']} | "
                     f"{r['restored_s']:.3f} | {r['reevaluated_s']:.3f} | "
                     f"{r['reevaluated_s'] / r['restored_s']:.1f} |")
    lines += ["", "llamart decodes every running stream in each decode whatever its adapter set "
              "(llama.cpp patched for per-sequence adapter scales: "
              "cmake/patches/llama-seq-lora-scales.patch), so no request waits for another "
              "set's turn; llama-server decodes only the slots whose set equals its first busy "
              "slot's."]
    return "\n".join(lines) + "\n"


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b else "-"


def plot(data: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for model, res in data["models"].items():
        for mix, rows in res.items():
            if mix == "restore":
                continue
            ns = [int(n) for n in rows]
            ax.plot(ns, [rows[str(n)]["tps"] for n in ns], marker="o", label=f"{model}: {mix}")
    ax.set_xlabel("concurrent streams")
    ax.set_ylabel("aggregate generated tokens/s")
    ax.set_xticks([1, 2, 4, 8])
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("llamart n_parallel=8: continuous batching")
    fig.tight_layout()
    fig.savefig(PLOT, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
