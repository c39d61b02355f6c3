"""The wllama section and target rows of docs/benchmarks.md (from results.json's "wllama")."""

from __future__ import annotations

from typing import Any

from .stats import med, ratio, spread

TARGET = 2.5  # llamart >= 2.5x wllama, generation and prompt, at equal threads


def _fmt(r: float | None) -> str:
    return "n/a" if r is None else f"{int(r * 100) / 100:.2f}x"  # truncated, as report.py


def llamart_figures(data: dict[str, Any], key: str,
                    threads: str) -> tuple[dict[str, Any], str]:
    """llamart's Chromium pp/tg for a model at a thread count: the run paired with wllama's
    (same rounds, same prompt ids, its pthreads module), else the WebAssembly section's run of
    that module at that count; and where it came from."""
    w = (data.get("wllama") or {}).get(key) or {}
    paired = (w.get("llamart") or {}).get(threads) or {}
    if paired.get("tg_tps"):
        return paired, "paired"
    from .results import wasm_runs
    from .wasm import system_name

    name = system_name("Chromium", "threads", int(threads))
    chromium = ((wasm_runs(data).get(key) or {}).get("systems") or {}).get(name) or {}
    if chromium.get("tg_tps"):
        return chromium, "wasm section"
    return {}, (w.get("llamart") or {}).get("unavailable") or "not measured"


def rows(data: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (model, wllama threads): both systems' samples and the ratios."""
    out = []
    for key, w in (data.get("wllama") or {}).items():
        for t, e in (w.get("threads") or {}).items():
            me, source = llamart_figures(data, key, t)
            out.append({"model": key, "threads": t, "wllama": e, "llamart": me,
                        "source": source,
                        "pp": ratio(me.get("pp_tps", []), e.get("pp_tps", [])),
                        "tg": ratio(me.get("tg_tps", []), e.get("tg_tps", []))})
    return out


def section(data: dict[str, Any]) -> list[str]:
    runs = data.get("wllama") or {}
    if not runs:
        return ["Not measured in this run (`python -m bench --wllama-only`).", ""]
    out: list[str] = []
    for key, w in runs.items():
        if w.get("unavailable"):
            out += [f"{key}: not measured: {w['unavailable']}.", ""]
    mods = [w["module"] for w in runs.values() if w.get("module")]
    if mods:
        m = mods[0]
        mem = ", ".join(f"{'shared ' if x['shared'] else ''}"
                        f"{'memory64' if x['memory64'] else 'memory32'}"
                        f"{' (imported ' + x['import'] + ')' if x['import'] else ''}"
                        for x in m["memories"])
        rt = next((e.get("runtime") for w in runs.values()
                   for e in (w.get("threads") or {}).values() if e.get("runtime")), None) or {}
        out += [f"wllama module: `{m['package']}` {m['version']}, `{m['path']}` ({m['bytes']:,} "
                f"bytes, sha256 `{m['sha256'][:16]}…`; {mem}); its JSPI build (the npm "
                "package holds no other: the compat build is a separate package, fetched from "
                f"a CDN, never used here); libllama `{rt.get('libllama', '?')}`, JSPI in the "
                f"browser: {rt.get('jspi', '?')}, cross-origin isolated: "
                f"{rt.get('crossOriginIsolated', '?')}.", ""]
    out += [
        "Both in the same headless Chromium, served by the same local COOP/COEP server (wllama "
        "from node_modules), on the same GGUF file and the same prompt tokens, rounds "
        "alternating. wllama: `loadModel([blob], {n_threads, n_ctx: n_prompt + n_gen, n_batch: "
        "512, n_ubatch: 512, n_parallel: 1, n_gpu_layers: 0})`; **pp** = wall clock of "
        "`createCompletion({prompt: text, n_predict: 1, cache_prompt: false, temperature: 0, "
        "top_k: 1})` where the text is seeded random words that llama.cpp's tokenizer makes "
        "exactly n_prompt tokens (wllama 3.13.0 takes no token ids; its own timings confirm "
        "`prompt_n` = n_prompt, and llamart gets those very ids); **tg** = wall clock of "
        "`createCompletion` on a one-token prompt with `n_predict: n_gen, ignore_eos: true`, "
        "greedy (= n_gen single-token decodes, as llamart's `Engine.generate([bos])`); a "
        "warm-up then 3 timed runs per page load, medians over all. llamart: its pthreads "
        "module (what an isolated page loads) at the same thread count (`Engine.logits` / "
        "`Engine.generate` in Pyodide, as in the WebAssembly section).", "",
        "| model | threads | wllama pp tokens/s | wllama tg tokens/s | llamart pp "
        "tokens/s | llamart tg tokens/s | pp llamart / wllama | "
        "tg llamart / wllama | wllama's own timings pp / tg |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows(data):
        e, me = r["wllama"], r["llamart"]
        if not e.get("tg_tps"):
            out.append(f"| {r['model']} | {r['threads']} | failed: "
                       f"{(e.get('errors') or ['?'])[0][:100]} | | | | | | |")
            continue
        mine = (f"{spread(me['pp_tps'])} | {spread(me['tg_tps'])}" if me.get("tg_tps")
                else f"n/a ({r['source'][:80]}) | n/a")
        own = f"{med(e.get('pp_server_tps') or []) or 0:.1f} / " \
              f"{med(e.get('tg_server_tps') or []) or 0:.1f}"
        out.append(f"| {r['model']} | {r['threads']} | {spread(e['pp_tps'])} | "
                   f"{spread(e['tg_tps'])} | {mine} | {_fmt(r['pp'])} | {_fmt(r['tg'])} | "
                   f"{own} |")
    sources = {r["source"] for r in rows(data) if r["llamart"]}
    if "wasm section" in sources:
        out.append("")
        out.append("Where no paired llamart run was made, its figures come from the "
                   "WebAssembly section's Pyodide + Chromium run (a different run).")
    out.append("")
    return out


def targets(data: dict[str, Any]) -> list[tuple[str, str, bool | None]]:
    """(target, measured, met) rows: llamart >= 2.5x wllama, pp and tg, per model and threads."""
    out: list[tuple[str, str, bool | None]] = []
    for r in rows(data):
        for what in ("tg", "pp"):
            value = r[what]
            out.append((f"llamart {what} >= {TARGET}x wllama at equal threads ({r['model']}, "
                        f"{r['threads']} thr)", _fmt(value),
                        None if value is None else value >= TARGET))
    return out
