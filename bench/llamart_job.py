"""The llamart measurements, through the public Engine API; stdlib + llamart only, so the same
code runs natively (in a child process, see bench/worker_llamart.py) and inside Pyodide.

``speed(job)`` mirrors llama-bench's procedure: load; the pp test (one warm-up prompt run, then
``reps`` timed prompt runs: ``n_prompt`` tokens from a clean state); the tg test (one warm-up
generated token, then ``reps`` timed generations: ``n_gen`` greedy tokens after a one-token
prompt, i.e. ``n_gen`` decodes).
``lora(job)`` times the LoRA operations and generation with 0, 1 and 2 adapters; ``validate(job)``
the GGUF validation next to a load; ``grammar(job)`` the cost per token of a grammar.
"""

from __future__ import annotations

import time
from typing import Any

clock = time.perf_counter


def _load(job: dict[str, Any]) -> tuple[Any, float]:
    from llamart import Engine

    started = clock()
    engine = Engine(job.get("backend"))
    engine.load_model(job["model"], n_ctx=job["n_ctx"], n_batch=job["n_batch"],
                      n_threads=job["n_threads"])
    return engine, clock() - started


def _generate(engine: Any, bos: int, n_gen: int) -> tuple[float, int, float]:
    """(seconds, tokens produced, seconds to the first chunk) of a greedy generation."""
    started = clock()
    first = None
    for _chunk in engine.generate([bos], max_tokens=n_gen, temperature=0.0, repeat_penalty=1.0):
        if first is None:
            first = clock() - started
    elapsed = clock() - started
    return elapsed, int(engine.last_usage["completion_tokens"]), first or elapsed


def speed(job: dict[str, Any]) -> dict[str, Any]:
    """Load time, pp and tg seconds for one (model, threads) configuration."""
    engine, load_s = _load(job)
    try:
        prompt = job["prompt"]
        bos = prompt[0]
        # as llama-bench: the pp test (a warm-up, then its reps back to back), then the tg test;
        # reset() first each time, or prefix reuse would evaluate nothing (the same prompt)
        engine.logits(prompt)
        pp_s, tg_s, produced = [], [], []
        for _ in range(job.get("reps", 1)):
            engine.reset()
            started = clock()
            engine.logits(prompt)
            pp_s.append(clock() - started)
        _generate(engine, bos, 1)
        for _ in range(job.get("reps", 1)):
            elapsed, n, _first = _generate(engine, bos, job["n_gen"])
            tg_s.append(elapsed)
            produced.append(n)
        return {"load_s": load_s, "pp_s": pp_s, "tg_s": tg_s, "tg_tokens": produced,
                "system_info": engine.capabilities.system_info}
    finally:
        engine.dispose()


def chat(job: dict[str, Any]) -> dict[str, Any]:
    """The multi-turn chat (bench/chat.py), with or without prefix reuse."""
    from .chat import llamart_chat

    return llamart_chat(job)


def _timed(fn: Any, *args: Any, **kwargs: Any) -> float:
    started = clock()
    fn(*args, **kwargs)
    return clock() - started


def _read_file(path: str) -> float:
    started = clock()
    with open(path, "rb") as f:
        while f.read(1 << 20):
            pass
    return clock() - started


def lora(job: dict[str, Any]) -> dict[str, Any]:
    """LoRA operation timings (seconds) and generation seconds with 0, 1 and 2 adapters."""
    engine, _load_s = _load(job)
    a1, a2 = job["adapters"]
    bos, n_gen = job["prompt"][0], job["n_gen"]
    out: dict[str, Any] = {k: [] for k in (
        "read_file", "first_set", "scale_update", "remove", "clear", "first_token_base",
        "first_token_after_change", "tg0", "tg1", "tg2")}
    try:
        _generate(engine, bos, 2)  # warm-up
        for rep in range(job.get("reps", 3)):
            # a fresh adapter each rep: unload and reload the model so set_lora reads the file
            if rep:
                engine.unload_model()
                engine.load_model(job["model"], n_ctx=job["n_ctx"], n_batch=job["n_batch"],
                                  n_threads=job["n_threads"])
                _generate(engine, bos, 2)
            out["first_token_base"].append(_generate(engine, bos, 1)[0])
            out["read_file"].append(_read_file(a1))  # right before: a paired comparison
            out["first_set"].append(_timed(engine.set_lora, a1, 1.0))
            out["first_token_after_change"].append(_generate(engine, bos, 1)[0])
            # alternate 0.5 / 1.0 so every call changes the active set
            updates = [_timed(engine.set_lora, a1, 0.5 + 0.5 * (i % 2)) for i in range(50)]
            out["scale_update"].append(sorted(updates)[len(updates) // 2])
            out["remove"].append(_timed(engine.remove_lora, a1))
            engine.set_lora(a1, 1.0)
            engine.set_lora(a2, 1.0)
            out["clear"].append(_timed(engine.clear_loras))
            # generation with 0, 1, 2 adapters, alternating (handles stay loaded)
            for n_adapters, key in ((0, "tg0"), (1, "tg1"), (2, "tg2")):
                engine.clear_loras()
                for path in (a1, a2)[:n_adapters]:
                    engine.set_lora(path, 1.0)
                elapsed, n, _first = _generate(engine, bos, n_gen)
                out[key].append(n / elapsed)
        return out
    finally:
        engine.dispose()


def validate(job: dict[str, Any]) -> dict[str, Any]:
    """GGUF validation (with the C string walk, then pure Python) and Engine load, in seconds,
    ``reps`` rounds; tools/bench_validate.py --pyodide runs it in Pyodide."""
    from llamart import Engine, gguf
    from llamart.gguf.c_scan import c_string_scan

    out: dict[str, Any] = {"validate_s": [], "python_walk_s": [], "load_s": []}
    engine = Engine(job.get("backend"))
    try:
        for _ in range(job.get("reps", 5)):
            model = job["model"]
            out["validate_s"].append(_timed(gguf.validate_model, model, scan=c_string_scan()))
            out["python_walk_s"].append(_timed(gguf.validate_model, model))
            out["load_s"].append(_timed(engine.load_model, model, n_ctx=job["n_ctx"],
                                        n_threads=1))
            engine.unload_model()
        out["c_walk"] = c_string_scan() is not None
        return out
    finally:
        engine.dispose()


# grammar(job): one that lets the model write anything (the cheap path: llama.cpp's check of
# the unconstrained choice passes) and a JSON schema (tokens are refused, the grammar then runs
# over the whole vocabulary)
GRAMMAR_ANY = "root ::= [^\\x00]*"
GRAMMAR_SCHEMA = {"type": "array", "items": {"type": "string", "maxLength": 12},
                  "minItems": 64}


def grammar(job: dict[str, Any]) -> dict[str, Any]:
    """Seconds per generated token, greedy after a one-token prompt (BOS, as the tg test),
    without a grammar and with each grammar above (rounds alternate the three); the token
    counts say how far each went."""
    engine, _load_s = _load(job)
    prompt, n_gen = job["prompt"][:1], job["n_gen"]
    cases = {"none": {}, "any_text": {"grammar": GRAMMAR_ANY},
             "json_schema": {"json_schema": GRAMMAR_SCHEMA}}
    out: dict[str, Any] = {k: [] for k in cases}
    out["tokens"] = {k: [] for k in cases}
    try:
        for options in cases.values():  # warm-up (and the grammars are checked once)
            engine.complete(prompt, 2, temperature=0.0, repeat_penalty=1.0, **options)
        for _ in range(job.get("reps", 3)):
            for name, options in cases.items():
                started = clock()
                engine.complete(prompt, n_gen, temperature=0.0, repeat_penalty=1.0, **options)
                n = int(engine.last_usage["completion_tokens"])
                out[name].append((clock() - started) / max(1, n))
                out["tokens"][name].append(n)
        return out
    finally:
        engine.dispose()
