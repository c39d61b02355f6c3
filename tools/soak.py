"""Soak test: does memory stay flat over many model loads and LoRA changes?

    python -m tools.soak --cycles 1000 --lora-ops 10000 [--generations 200]
                         [--fixtures DIR] [--json PATH] [--warmup 0.1] [--target 2.0]

tests/test_soak.py runs short phases of it on every platform (the Pyodide runner ships tools/).

Phase 1 loads and unloads the test model ``--cycles`` times (each cycle also evaluates a short
prompt and, where the backend applies LoRA, sets an adapter that the unload must free). Phase 2
performs ``--lora-ops`` set_lora / scale update / remove_lora / clear_loras calls on one loaded
model, evaluating a prompt every 100 calls. Phase 3 starts ``--generations`` generations and
closes each after two chunks (the engine must stay usable and give the same text). Phase 4
runs as many rounds of random concurrent generations on a parallel engine (n_parallel 4:
random arrivals, adapter sets, cancels and abandons; no sequence or adapter may leak). Memory is
sampled (after ``gc.collect()``) during each phase; growth is measured from the end of the
warm-up (the first ``--warmup`` fraction of each phase, when allocator pools and caches fill)
to the end of the phase (end point), and as a trend: the median of the last quarter of the
samples against the median of the first quarter (robust to allocator noise; used for the
verdict).

Memory source: the process's resident set size (VmRSS in /proc/self/status) natively; in
Pyodide, the size of the llamart WebAssembly module's linear memory (it only grows, so any
growth after warm-up means the C heap needed more room). Without either, the tool says so and
exits with status 2. Exit status 1 when a phase grew by ``--target`` percent or more.
Fixtures are built (needs numpy + gguf) unless ``--fixtures`` or env LLAMART_FIXTURES names a
folder with manifest.json.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

PROMPT = "Once upon a time"
N_CTX = 256
N_THREADS = 1  # memory is measured, not speed; one thread is steady on a busy machine
STATUS = "/proc/self/status"


# ---- memory sources ----

def _vm_rss_kb() -> int:
    with open(STATUS) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise OSError(f"no VmRSS line in {STATUS}")


def _wasm_memory_kb() -> int:
    import llamart_wasm  # type: ignore[import-not-found]

    return int(llamart_wasm.HEAPU8.length) // 1024


def memory_source() -> tuple[str, Callable[[], int]] | None:
    """(description, function returning kB) for this platform, or None when there is none."""
    try:
        _vm_rss_kb()
        trim = ", after malloc_trim(0)" if _TRIM is not None else ""
        return f"VmRSS from /proc/self/status (resident set size{trim})", _vm_rss_kb
    except (OSError, ValueError):
        pass
    if sys.platform == "emscripten":
        try:
            _wasm_memory_kb()
            return "llamart WebAssembly linear memory size (grows only)", _wasm_memory_kb
        except Exception:  # no module loaded, or no HEAPU8 on it
            pass
    return None


def no_source_reason() -> str:
    """Why :func:`memory_source` found nothing, as a sentence."""
    return (f"no memory figure on this platform ({sys.platform}): {STATUS} is missing and "
            "no llamart WebAssembly module is loaded")


# ---- measurement ----

@dataclass
class PhaseResult:
    """Memory over one phase; kB figures from the platform's memory source."""

    name: str
    iterations: int
    warmup: int
    start_kb: int = 0
    after_warmup_kb: int = 0
    end_kb: int = 0
    max_kb: int = 0
    growth_pct: float = 0.0
    growth_kb: int = 0
    trend_pct: float = 0.0  # median of the last samples against median of the first ones
    seconds: float = 0.0
    samples: list[tuple[int, int]] = field(default_factory=list)  # (iteration, kB)


def _malloc_trim() -> Callable[[], None] | None:
    """glibc's malloc_trim(0): hands freed heap pages back, so RSS shows live memory only."""
    try:
        import ctypes

        trim = ctypes.CDLL(None).malloc_trim
    except (ImportError, OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    return lambda: trim(0)


_TRIM = _malloc_trim() if os.path.exists(STATUS) else None


def _measure(read: Callable[[], int]) -> int:
    gc.collect()
    if _TRIM is not None:
        _TRIM()
    return read()


def run_phase(name: str, n: int, step: Callable[[int], None], read: Callable[[], int],
              warmup_fraction: float = 0.1, n_samples: int = 20,
              period: int = 1) -> PhaseResult:
    """Call ``step(i)`` for i in range(n), sampling memory; growth counted after warm-up.

    Samples are taken only after a multiple of ``period`` steps, so that each one sees the
    same state (e.g. the end of a cycle of LoRA calls, when no adapter is loaded).
    """
    if n < 2 * period:
        raise ValueError(f"{name}: need at least {2 * period} iterations, got {n}")
    last = n - n % period  # the last step count at which a sample is taken
    warmup = max(period, int(n * warmup_fraction) // period * period)
    warmup = min(warmup, last - period)
    every = max(period, (last - warmup) // n_samples // period * period)
    res = PhaseResult(name=name, iterations=n, warmup=warmup)
    res.start_kb = _measure(read)
    started = time.perf_counter()
    for i in range(n):
        step(i)
        done = i + 1
        if done == warmup:
            res.after_warmup_kb = _measure(read)
            res.samples.append((done, res.after_warmup_kb))
        elif done > warmup and ((done - warmup) % every == 0 or done == last):
            res.samples.append((done, _measure(read)))
    res.seconds = round(time.perf_counter() - started, 3)
    res.end_kb = res.samples[-1][1]
    res.max_kb = max(kb for _, kb in res.samples)
    res.growth_kb = res.end_kb - res.after_warmup_kb
    res.growth_pct = round(100.0 * res.growth_kb / res.after_warmup_kb, 3)
    k = max(1, len(res.samples) // 4)
    first = statistics.median(kb for _, kb in res.samples[:k])
    final = statistics.median(kb for _, kb in res.samples[-k:])
    res.trend_pct = round(100.0 * (final - first) / first, 3)
    return res


def load_cycles(engine: Any, fx: dict[str, str], cycles: int, read: Callable[[], int],
                warmup_fraction: float = 0.1) -> PhaseResult:
    """Load, evaluate, (set an adapter,) unload ``cycles`` times."""
    lora = engine.capabilities.lora
    expected = _logits_of(engine, fx)

    def step(i: int) -> None:
        engine.load_model(fx["model_f32"], n_ctx=N_CTX, n_threads=N_THREADS)
        if lora:
            engine.set_lora(fx["lora_a" if i % 2 else "lora_b"], 0.5)
        out = engine.logits(PROMPT)
        if not lora and out.tobytes() != expected:
            raise AssertionError(f"cycle {i}: logits changed after reloading")
        engine.unload_model()

    return run_phase("load_unload", cycles, step, read, warmup_fraction)


def lora_ops(engine: Any, fx: dict[str, str], ops: int, read: Callable[[], int],
             warmup_fraction: float = 0.1, eval_every: int = 100) -> PhaseResult:
    """``ops`` LoRA calls (set, rescale, stack, remove, clear) on one loaded model."""
    if not engine.capabilities.lora:
        raise ValueError(f"the {engine.capabilities.backend} backend does not apply LoRA")
    engine.load_model(fx["model_f32"], n_ctx=N_CTX, n_threads=N_THREADS)
    base = engine.logits(PROMPT).tobytes()
    a, b, c = fx["lora_a"], fx["lora_b"], fx["lora_c"]
    plan: list[Callable[[int], Any]] = [
        lambda i: engine.set_lora(a, 1.0),
        lambda i: engine.set_lora(b, 0.5),
        lambda i: engine.set_lora(a, 0.25 + (i % 7) * 0.1),  # scale update: no file read
        lambda i: engine.set_lora(c, -0.5),
        lambda i: engine.remove_lora(b),
        lambda i: engine.remove_lora(a),
        lambda i: engine.clear_loras(),
    ]

    def step(i: int) -> None:
        plan[i % len(plan)](i)
        if i % eval_every == eval_every - 1:
            engine.logits(PROMPT)
        if i % len(plan) == len(plan) - 1 and engine.loras:
            raise AssertionError(f"op {i}: loras not empty after clear_loras: {engine.loras}")

    # sample only at the end of a plan cycle: after clear_loras, no adapter loaded
    res = run_phase("lora_ops", ops, step, read, warmup_fraction, period=len(plan))
    engine.clear_loras()
    if engine.logits(PROMPT).tobytes() != base:
        raise AssertionError("after the LoRA ops and clear_loras the logits are not the base's")
    engine.unload_model()
    return res


def abandoned_generations(engine: Any, fx: dict[str, str], n: int, read: Callable[[], int],
                          warmup_fraction: float = 0.1) -> PhaseResult:
    """Start ``n`` generations and close each after two chunks; the engine must stay usable."""
    engine.load_model(fx["model_f32"], n_ctx=N_CTX, n_threads=N_THREADS)
    full = engine.complete(PROMPT, max_tokens=16, temperature=0.0)

    def step(i: int) -> None:
        it = engine.generate(PROMPT, max_tokens=16, temperature=0.8 if i % 2 else 0.0, seed=i)
        next(it)
        next(it)
        it.close()
        if engine.last_finish_reason != "cancelled":
            raise AssertionError(f"generation {i}: finish reason {engine.last_finish_reason}")

    res = run_phase("abandoned", n, step, read, warmup_fraction)
    if engine.complete(PROMPT, max_tokens=16, temperature=0.0) != full:
        raise AssertionError("greedy text changed after the abandoned generations")
    engine.unload_model()
    return res


def scheduled(engine: Any, fx: dict[str, str], n: int, read: Callable[[], int],
              warmup_fraction: float = 0.1, seed: int = 7) -> PhaseResult:
    """``n`` rounds on a parallel engine (n_parallel 4): each round starts 2-6 generations at
    random (seeded) with random adapter sets where LoRA applies, interleaves their tokens,
    cancels or abandons some part-way, reads logits in between, and checks afterwards that no
    sequence is left running and no more adapters are loaded than the cache's bound; greedy text
    is a lone engine's before and after."""
    import random

    rng = random.Random(seed)
    lora = engine.capabilities.lora
    sets = [None, {}, {fx["lora_a"]: 1.0}, {fx["lora_b"]: 0.5},
            {fx["lora_a"]: 0.5, fx["lora_c"]: 1.0}] if lora else [None]
    engine.load_model(fx["model_f32"], n_ctx=N_CTX, n_threads=N_THREADS, n_parallel=4)
    full = engine.complete(PROMPT, max_tokens=16, temperature=0.0, lora={} if lora else None)
    model = engine._model  # noqa: SLF001 - the scheduler's own state is what is checked

    def step(i: int) -> None:
        gens = [engine.generate(f"{PROMPT} {rng.randrange(1000)}", max_tokens=rng.randrange(1, 24),
                                temperature=rng.choice([0.0, 0.8]), seed=i,
                                lora=rng.choice(sets))
                for _ in range(rng.randrange(2, 7))]
        live = list(gens)
        while live:
            for g in list(live):
                act = rng.random()
                if act < 0.05:
                    g.cancel()
                if act < 0.1:
                    g.close()  # abandoned part-way
                    live.remove(g)
                    continue
                try:
                    next(g)
                except StopIteration:
                    live.remove(g)
            if rng.random() < 0.1:
                engine.logits(PROMPT)
        if model.scheduler.busy or len(model.lora_cache) > model.lora_cache.max_loaded:
            raise AssertionError(f"round {i}: a sequence or adapter leaked")

    res = run_phase("scheduled", n, step, read, warmup_fraction)
    if engine.complete(PROMPT, max_tokens=16, temperature=0.0, lora={} if lora else None) != full:
        raise AssertionError("greedy text changed after the scheduled rounds")
    engine.unload_model()
    return res


def _logits_of(engine: Any, fx: dict[str, str]) -> bytes:
    engine.load_model(fx["model_f32"], n_ctx=N_CTX, n_threads=N_THREADS)
    try:
        return engine.logits(PROMPT).tobytes()
    finally:
        engine.unload_model()


# ---- command line ----

def _fixtures(folder: str | None, tmp: str) -> dict[str, str]:
    folder = folder or os.environ.get("LLAMART_FIXTURES")
    if folder:
        from llamart.testing.fixtures import load

        return load(folder)
    from llamart.testing.fixtures import build

    return build(tmp)


def _text(report: dict[str, Any]) -> str:
    lines = [f"llamart soak on {report['backend']} ({report['platform']}); memory: "
             f"{report['memory_source']}; target growth < {report['target_pct']}% after warm-up"]
    for ph in report["phases"]:
        verdict = "ok" if ph["trend_pct"] < report["target_pct"] else "OVER TARGET"
        lines.append(
            f"  {ph['name']:<12} {ph['iterations']:>6} iterations ({ph['warmup']} warm-up) "
            f"in {ph['seconds']:.1f} s: {ph['start_kb']} kB at start, {ph['after_warmup_kb']} kB "
            f"after warm-up, {ph['end_kb']} kB at end (max {ph['max_kb']} kB): growth "
            f"{ph['growth_kb']:+d} kB = {ph['growth_pct']:+.3f}%; trend (median of the last "
            f"quarter of samples vs the first) {ph['trend_pct']:+.3f}%  {verdict}")
    for note in report["notes"]:
        lines.append(f"  note: {note}")
    return "\n".join(lines)


def run(cycles: int, ops: int, fx: dict[str, str], warmup: float = 0.1,
        target: float = 2.0, generations: int = 0) -> dict[str, Any]:
    """The phases on a default Engine; the report as a JSON-ready dict."""
    from llamart import Engine

    source = memory_source()
    if source is None:
        raise OSError(no_source_reason())
    desc, read = source
    notes = []
    with Engine() as engine:
        phases = [load_cycles(engine, fx, cycles, read, warmup)]
        if generations:
            phases.append(abandoned_generations(engine, fx, generations, read, warmup))
            phases.append(scheduled(engine, fx, generations, read, warmup))
        if engine.capabilities.lora:
            phases.append(lora_ops(engine, fx, ops, read, warmup))
        else:
            notes.append(f"LoRA phase not run: {engine.capabilities.lora_reason}")
        backend = engine.capabilities.backend
    out = [asdict(p) for p in phases]
    return {
        "backend": backend,
        "platform": sys.platform,
        "python": sys.version.split()[0],
        "memory_source": desc,
        "target_pct": target,
        "passed": all(p.trend_pct < target for p in phases),
        "phases": out,
        "notes": notes,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.soak", description=__doc__.split("\n")[0])
    ap.add_argument("--cycles", type=int, default=1000, help="model load/unload cycles")
    ap.add_argument("--lora-ops", type=int, default=10000, help="LoRA calls")
    ap.add_argument("--generations", type=int, default=200,
                    help="generations abandoned after two chunks (0: skip)")
    ap.add_argument("--warmup", type=float, default=0.1, help="warm-up fraction of each phase")
    ap.add_argument("--target", type=float, default=2.0, help="allowed growth in percent")
    ap.add_argument("--fixtures", help="folder with manifest.json (default: build them)")
    ap.add_argument("--json", help="also write the JSON report to this file ('-': stdout)")
    args = ap.parse_args(argv)
    os.environ.setdefault("GGML_NO_BACKTRACE", "1")
    if memory_source() is None:
        print(f"soak: {no_source_reason()}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="llamart-soak-") as tmp:
        fx = _fixtures(args.fixtures, tmp)
        report = run(args.cycles, args.lora_ops, fx, args.warmup, args.target,
                         args.generations)
    print(_text(report))
    if args.json == "-":
        print(json.dumps(report, indent=1))
    elif args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
