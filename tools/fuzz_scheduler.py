"""Fuzz the parallel engine's scheduler: random arrivals, arguments, adapters and cancels.

    python -m tools.fuzz_scheduler [--seed S] [--rounds N] [--threads] [--fixtures DIR]

Each round starts 1-8 calls at once on one Engine loaded with n_parallel 4 (generate, chat,
logits, embed; random sampling, stop strings, grammars good and bad, prompts short, long and
too long for the context, token ids out of the vocabulary, ``lora=`` sets of good adapters,
adapters for another base, missing and mutated adapter files, bad scales), interleaves them (or
runs them on threads with ``--threads``), and cancels or abandons some part-way. Every call must
end in text or a clean llamart/Python exception (never a crash or a hang: run it in a child
process, as tests/test_fuzz_subset.py does); after each round no sequence may still run, no
more adapters may be loaded than the cache's bound, and at the end a greedy reference call must
still give the text it gave at the start. Prints one JSON summary line; exit 1 on a violation.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import tempfile
import threading
from collections import Counter
from typing import Any

from llamart import Engine, LlamartError

CLEAN = (LlamartError, ValueError, TypeError, FileNotFoundError)


def _calls(engine: Engine, fx: dict[str, str], rng: random.Random, bad_adapters: list[str]
           ) -> list[tuple[str, Any]]:
    lora_ok = engine.capabilities.lora
    good = [fx["lora_a"], fx["lora_b"], fx["lora_c"]]
    out = []
    for _ in range(rng.randrange(1, 9)):
        kind = rng.choice(["generate", "generate", "chat", "logits", "embed"])
        prompt: Any = rng.choice(["Once upon a time", "hi", "x " * rng.randrange(1, 400),
                                  "a b c " * 10])
        if rng.random() < 0.05:
            prompt = [rng.randrange(-5, 10**6) for _ in range(rng.randrange(1, 8))]
        kw: dict[str, Any] = {"max_tokens": rng.randrange(0, 40),
                              "temperature": rng.choice([0.0, 0.7, 1.5]),
                              "seed": rng.randrange(100)}
        if rng.random() < 0.2:
            kw["stop"] = [rng.choice(["a", "the", "\n", "zz"])]
        if rng.random() < 0.1:
            kw["grammar"] = rng.choice(['root ::= "yes" | "no"', "root ::= undefined",
                                        'root ::= [a-z]+'])
        if rng.random() < 0.6:
            lora: Any = {}
            for _ in range(rng.randrange(0, 3)):
                lora[rng.choice(good + bad_adapters)] = rng.choice(
                    [1.0, 0.5, 0.0, -1.0, math.nan] if rng.random() < 0.1 else [1.0, 0.5])
            if rng.random() < 0.03:
                lora = ["not", "a", "mapping"]
            if lora_ok or rng.random() < 0.2:
                kw["lora"] = lora
        out.append((kind, (prompt, kw)))
    return out


def _start(engine: Engine, kind: str, args: Any) -> Any:
    """A generator that performs the call step by step (one yield per chunk)."""
    prompt, kw = args
    if kind == "logits":
        yield engine.logits(prompt)
        return
    if kind == "embed":
        yield engine.embed(prompt if isinstance(prompt, str) else "x")
        return
    if kind == "chat":
        text = prompt if isinstance(prompt, str) else "hi"
        gen = engine.chat([{"role": "user", "content": text}], stream=True, **kw)
    else:
        gen = engine.generate(prompt, **kw)
    yield from gen


def run_round(engine: Engine, fx: dict[str, str], rng: random.Random, bad: list[str],
              outcomes: Counter[str], threads: bool) -> None:
    calls = [(_start(engine, k, a), rng.random()) for k, a in _calls(engine, fx, rng, bad)]

    def drive(gen: Any, fate: float) -> None:
        try:
            for i, _chunk in enumerate(gen):
                if fate < 0.15 and i == 2:
                    gen.close()  # abandoned part-way
                    outcomes["abandoned"] += 1
                    return
            outcomes["done"] += 1
        except CLEAN as e:
            outcomes[type(e).__name__] += 1

    if threads:
        ts = [threading.Thread(target=drive, args=c) for c in calls]
        for t in ts:
            t.start()
        for t in ts:
            t.join(timeout=300)
        if any(t.is_alive() for t in ts):
            raise AssertionError("a call hung")
        return
    live = [(iter(_step(g, f, outcomes)), None) for g, f in calls]
    while live:
        for item in list(live):
            try:
                next(item[0])
            except StopIteration:
                live.remove(item)


def _step(gen: Any, fate: float, outcomes: Counter[str]) -> Any:
    """The interleaved form of ``drive``: one chunk per turn."""
    try:
        i = 0
        while True:
            try:
                next(gen)
            except StopIteration:
                outcomes["done"] += 1
                return
            if fate < 0.15 and i == 2:
                gen.close()
                outcomes["abandoned"] += 1
                return
            i += 1
            yield
    except CLEAN as e:
        outcomes[type(e).__name__] += 1


def _bad_adapters(fx: dict[str, str], tmp: str, rng: random.Random) -> list[str]:
    """Adapters that must be refused cleanly: another base, broken, missing, mutated bytes."""
    out = [fx["bad_arch"], fx["bad_shape"], fx["bad_garbage"], fx["bad_missing_half"],
           os.path.join(tmp, "missing.gguf")]
    with open(fx["lora_a"], "rb") as f:
        data = bytearray(f.read())
    for i in range(4):
        d = bytearray(data)
        for _ in range(8):
            d[rng.randrange(len(d))] = rng.randrange(256)
        path = os.path.join(tmp, f"mutated{i}.gguf")
        with open(path, "wb") as f:
            f.write(d)
        out.append(path)
    return out


def run(fx: dict[str, str], seed: int, rounds: int, threads: bool) -> dict[str, Any]:
    rng = random.Random(seed)
    outcomes: Counter[str] = Counter()
    with tempfile.TemporaryDirectory(prefix="llamart-fuzz-sched-") as tmp, Engine() as engine:
        engine.load_model(fx["model_f32"], n_ctx=512, n_threads=1, n_parallel=4)
        ref_kw: dict[str, Any] = {"lora": {}} if engine.capabilities.lora else {}
        reference = engine.complete("Once upon a time", max_tokens=16, temperature=0, **ref_kw)
        bad = _bad_adapters(fx, tmp, rng)
        model = engine._model  # noqa: SLF001 - the scheduler's own state is what is checked
        for r in range(rounds):
            run_round(engine, fx, rng, bad, outcomes, threads)
            if model.scheduler.busy:
                raise AssertionError(f"round {r}: a sequence is still running")
            if len(model.lora_cache) > model.lora_cache.max_loaded:
                raise AssertionError(f"round {r}: {len(model.lora_cache)} adapters loaded")
        again = engine.complete("Once upon a time", max_tokens=16, temperature=0, **ref_kw)
        if again != reference:
            raise AssertionError(f"greedy text changed: {reference!r} -> {again!r}")
    return {"seed": seed, "rounds": rounds, "threads": threads, "outcomes": dict(outcomes)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.fuzz_scheduler",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--threads", action="store_true")
    ap.add_argument("--fixtures", help="folder with manifest.json (default: build them)")
    args = ap.parse_args(argv)
    os.environ.setdefault("GGML_NO_BACKTRACE", "1")
    import logging

    logging.getLogger("llamart").setLevel(logging.CRITICAL)
    with tempfile.TemporaryDirectory() as tmp:
        if args.fixtures:
            with open(os.path.join(args.fixtures, "manifest.json")) as f:
                fx = {k: os.path.join(args.fixtures, v) for k, v in json.load(f).items()}
        else:
            from llamart.testing.fixtures import build

            fx = build(tmp)
        try:
            summary = run(fx, args.seed, args.rounds, args.threads)
        except AssertionError as e:
            print(json.dumps({"violation": str(e)}))
            return 1
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
