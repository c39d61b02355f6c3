"""A bounded load test of an OpenAI-compatible server: ``python -m tools.load``.

N concurrent streaming clients (default 32) send a fixed number of chat requests (default
64), mixing the models given; prints p50/p95 time to first token, latency, aggregate
completion tokens/s and requests/s, and exits 1 if any request failed. ``--serve MODEL``
starts ``llamart serve`` on a free port first (``--lora`` passed on), and stops it after.

    python -m tools.load --url http://127.0.0.1:8000 --model smollm2 --model pirate
    python -m tools.load --serve .cache/models/SmolLM2-135M-Instruct.Q4_1.gguf \\
        --lora pirate=pirate.gguf:0.75 --model SmolLM2-135M-Instruct.Q4_1 --model pirate
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from typing import Any

QUESTIONS = ["Why is the sky blue?", "What do spiders eat?", "Who was Shakespeare?",
             "Why do leaves fall?", "What is the largest planet?", "How do birds fly?",
             "What is rain?", "Why do cats purr?"]


def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (nearest rank) of ``values``."""
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(p / 100 * len(s) + 0.5) - 1))] if s else float("nan")


async def one(client: Any, model: str, question: str, max_tokens: int,
              extra_body: dict[str, Any] | None = None, retries: int = 0) -> dict[str, Any]:
    import openai

    started = time.perf_counter()
    first = None
    tokens = 0
    retried = 0
    while True:  # with retries, a connection the server dropped is tried again (counted)
        try:
            stream = await client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": question}],
                max_tokens=max_tokens, temperature=0.0, stream=True,
                stream_options={"include_usage": True}, extra_body=extra_body)
            break
        except openai.APIConnectionError:
            retried += 1
            if retried > retries:
                raise
    chunks = 0  # the count where a server sends no usage (llama-cpp-python: a chunk a token)
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            chunks += 1
            if first is None:
                first = time.perf_counter() - started
        if chunk.usage is not None:
            tokens = chunk.usage.completion_tokens
    tokens = tokens or chunks
    return {"ttft": first if first is not None else time.perf_counter() - started,
            "latency": time.perf_counter() - started, "tokens": tokens, "retried": retried}


async def run(url: str, models: list[str], clients: int, requests: int, max_tokens: int,
              api_key: str, bodies: Sequence[dict[str, Any] | None] | None = None,
              retries: int = 0) -> dict[str, Any]:
    """The load; ``bodies``: extra request fields per model (e.g. llama-server's ``lora``);
    ``retries``: times a request whose connection failed is sent again (bench/ only: a
    test wants every failure seen)."""
    import openai

    client = openai.AsyncOpenAI(base_url=url.rstrip("/") + "/v1", api_key=api_key,
                                max_retries=0, timeout=600)
    todo = list(range(requests))
    results: list[dict[str, Any]] = []
    failures: list[str] = []

    async def worker() -> None:
        while todo:
            i = todo.pop()
            try:
                results.append(await one(client, models[i % len(models)],
                                         QUESTIONS[i % len(QUESTIONS)], max_tokens,
                                         bodies[i % len(bodies)] if bodies else None,
                                         retries))
            except Exception as e:  # counted and reported, the run goes on
                failures.append(f"{type(e).__name__}: {e}")

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(clients)))
    wall = time.perf_counter() - started
    await client.close()
    ttft = [r["ttft"] for r in results]
    lat = [r["latency"] for r in results]
    tokens = sum(r["tokens"] for r in results)
    return {"requests": requests, "ok": len(results), "failed": len(failures),
            "failures": failures[:5], "retried": sum(r["retried"] for r in results),
            "clients": clients, "models": models,
            "max_tokens": max_tokens, "wall_s": round(wall, 3),
            "ttft_p50_s": round(percentile(ttft, 50), 3),
            "ttft_p95_s": round(percentile(ttft, 95), 3),
            "latency_p50_s": round(percentile(lat, 50), 3),
            "latency_p95_s": round(percentile(lat, 95), 3),
            "completion_tokens": tokens, "tokens_per_s": round(tokens / wall, 1),
            "requests_per_s": round(len(results) / wall, 2),
            "mean_ttft_s": round(statistics.fmean(ttft), 3) if ttft else None}


def start_server(model: str, loras: list[str], extra: list[str]) -> tuple[Any, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "llamart", "serve", model, "--port", str(port), *extra]
    for lora in loras:
        cmd += ["--lora", lora]
    proc = subprocess.Popen(cmd)
    url = f"http://127.0.0.1:{port}"
    wait_ready(proc, url + "/health", "llamart serve")
    return proc, url


def wait_ready(proc: Any, url: str, what: str, timeout: float = 120.0) -> None:
    """Until ``url`` answers 200 (SystemExit if ``proc`` exits or ``timeout`` passes)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with status {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    proc.terminate()
    raise SystemExit(f"{what} did not become ready in {timeout:.0f} s")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.load", description=__doc__.split("\n")[0])
    p.add_argument("--url", help="the server (default: the one --serve starts)")
    p.add_argument("--serve", metavar="MODEL", help="start llamart serve MODEL first")
    p.add_argument("--lora", action="append", default=[], metavar="NAME=PATH[:SCALE]")
    p.add_argument("--serve-arg", action="append", default=[], metavar="ARG",
                   help="more llamart serve arguments (e.g. --serve-arg=--parallel=8)")
    p.add_argument("--model", action="append", required=True,
                   help="model name to request (repeatable: requests cycle through them)")
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--requests", type=int, default=64)
    p.add_argument("--max-tokens", type=int, default=32)
    p.add_argument("--api-key", default="none")
    p.add_argument("--json", action="store_true", help="print the result as JSON only")
    args = p.parse_args(argv)
    proc = None
    if args.serve:
        proc, url = start_server(args.serve, args.lora, args.serve_arg)
    elif args.url:
        url = args.url
    else:
        p.error("give --url or --serve")
    try:
        result = asyncio.run(run(url, args.model, args.clients, args.requests,
                                 args.max_tokens, args.api_key))
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(30)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{result['ok']}/{result['requests']} requests ok ({result['failed']} failed), "
              f"{result['clients']} concurrent streaming clients, models {args.model}, "
              f"max_tokens {args.max_tokens}")
        print(f"time to first token: p50 {result['ttft_p50_s']:.3f} s, "
              f"p95 {result['ttft_p95_s']:.3f} s")
        print(f"latency: p50 {result['latency_p50_s']:.3f} s, p95 {result['latency_p95_s']:.3f} s")
        print(f"aggregate: {result['tokens_per_s']} completion tokens/s, "
              f"{result['requests_per_s']} requests/s over {result['wall_s']} s")
        for f in result["failures"]:
            print(f"  failure: {f}")
    return 1 if result["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
