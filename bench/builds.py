"""Build variants side by side: llamart's default build (runtime CPU dispatch: ggml's
libggml-cpu-<level>.so variants, the best loaded for this CPU), llamart's portable build
(``-DLLAMART_CPU_VARIANTS=OFF``: one AVX2-level CPU backend, what 0.2.0 shipped) and llama-bench
built with ``GGML_NATIVE=ON`` (``-march=native``: what a user who builds llama.cpp for this
machine gets). ``python -m bench --builds-only``; part of ``python -m bench``.

The portable llamart and the native llama-bench are built once into build/bench-portable and
build/bench-native (a few minutes each on 2 cores); the default build is the one llamart runs
(LLAMART_LIB_DIR, build/dev or the installed package).
"""

from __future__ import annotations

import os
import subprocess
import time
from typing import Any

from . import machine, systems
from .config import REPO, ModelSpec, native_lib_dir
from .proc import BenchError

PORTABLE = REPO / "build" / "bench-portable"
NATIVE_BENCH = REPO / "build" / "bench-native"
NATIVE_FLAGS = [f.replace("-DGGML_NATIVE=OFF", "-DGGML_NATIVE=ON")
                for f in systems.LLAMA_BENCH_FLAGS]
SYSTEMS = ("llamart default (runtime dispatch)", "llamart portable (AVX2)",
           "llama-bench -march=native")


def ensure_portable(log: Any = print) -> str:
    """build/bench-portable/bin: llamart without CPU variants (configured and built once)."""
    lib = PORTABLE / "bin"
    if not (lib / "libllamart.so").exists():
        log(f"bench: building the portable llamart into {PORTABLE} (a few minutes)")
        cache = REPO / ".cache"
        subprocess.run(["nice", "-n", "10", "cmake", "-S", str(REPO), "-B", str(PORTABLE),
                        "-DCMAKE_BUILD_TYPE=Release", "-DLLAMART_CPU_VARIANTS=OFF",
                        f"-DLLAMART_CACHE_DIR={cache}"], check=True, stdout=subprocess.DEVNULL)
        subprocess.run(["nice", "-n", "10", "cmake", "--build", str(PORTABLE), "-j",
                        str(os.cpu_count() or 2)], check=True, stdout=subprocess.DEVNULL)
    return str(lib)


def measure(specs: list[ModelSpec], threads: list[int], rounds: int, prompt_for: Any,
            log: Any = print) -> dict[str, Any]:
    """model key -> threads -> system -> {"pp_tps": [...], "tg_tps": [...], "system_info"}."""
    portable = ensure_portable(log)
    native_bench = systems.ensure_llama_bench(log, NATIVE_BENCH, NATIVE_FLAGS)
    runners = {
        SYSTEMS[0]: lambda spec, t, p: systems.run_llamart(spec, t, p, lib_dir=native_lib_dir()),
        SYSTEMS[1]: lambda spec, t, p: systems.run_llamart(spec, t, p, lib_dir=portable),
        SYSTEMS[2]: lambda spec, t, p: systems.run_llama_bench(spec, t, p, binary=native_bench),
    }
    out: dict[str, Any] = {}
    for spec in specs:
        prompt = prompt_for(spec)
        for t in threads:
            cell = out.setdefault(spec.key, {}).setdefault(str(t), {})
            for r in range(rounds):
                names = list(runners)
                names = names[r % len(names):] + names[:r % len(names)]  # alternate the order
                for name in names:
                    started = time.monotonic()
                    try:
                        res = runners[name](spec, t, prompt)
                    except (BenchError, OSError) as e:
                        cell.setdefault(name, {}).setdefault("errors", []).append(str(e)[:300])
                        continue
                    entry = cell.setdefault(name, {})
                    entry.setdefault("pp_tps", []).extend(spec.n_prompt / s for s in res["pp_s"])
                    entry.setdefault("tg_tps", []).extend(
                        n / s for n, s in zip(res["tg_tokens"], res["tg_s"], strict=True))
                    entry.setdefault("load_avg", []).append(machine.load_average())
                    if res.get("system_info"):
                        entry["system_info"] = res["system_info"]
                    log(f"bench: builds {spec.key} t={t} round {r + 1}/{rounds} {name}: pp "
                        f"{max(entry['pp_tps']):.0f} t/s, tg {max(entry['tg_tps']):.0f} t/s "
                        f"({time.monotonic() - started:.0f} s)")
    return out


def variant(info: str | None) -> str:
    """The CPU variant named in a system_info string ("" when none)."""
    if info and info.startswith("CPU_VARIANT = "):
        return info.split(" |")[0].removeprefix("CPU_VARIANT = ")
    return ""

