"""Runtime CPU dispatch in the native build: ggml's CPU backend variants sit beside
libllamart, the core loads them from its own folder, and the one picked suits this CPU.

The references are independent of llamart: the variant list and each variant's features are read
from the pinned llama.cpp source (ggml/src/CMakeLists.txt), the CPU's features from
/proc/cpuinfo. Native x86-64 Linux only (the WebAssembly module has one SIMD128 backend).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from llamart.bindings._cdefs import lib_dir

# ggml feature name -> /proc/cpuinfo flag (ggml/src/ggml-cpu/arch/x86/cpu-feats.cpp checks)
CPUINFO_FLAG = {
    "SSE42": "sse4_2", "AVX": "avx", "F16C": "f16c", "FMA": "fma", "AVX2": "avx2",
    "BMI2": "bmi2", "AVX512": "avx512f", "AVX512_VBMI": "avx512vbmi",
    "AVX512_VNNI": "avx512_vnni", "AVX512_BF16": "avx512_bf16", "AVX_VNNI": "avx_vnni",
    "AMX_TILE": "amx_tile", "AMX_INT8": "amx_int8",
}

if sys.platform == "emscripten":
    pytest.skip("native runtime dispatch (WebAssembly has one SIMD128 CPU backend)",
                allow_module_level=True)
if not Path("/proc/cpuinfo").exists() or not list(Path(lib_dir()).glob("libggml-cpu-*.so")):
    pytest.skip("not an x86-64 Linux build with runtime CPU dispatch (LLAMART_CPU_VARIANTS)",
                allow_module_level=True)


def _variants(source: Path) -> dict[str, set[str]]:
    text = (source / "ggml" / "src" / "CMakeLists.txt").read_text()
    return {name: set(feats.split()) for name, feats in
            re.findall(r"ggml_add_cpu_backend_variant\((\w+)\s*([A-Z0-9_ ]*)\)", text)}


def _cpu_flags() -> set[str]:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def _variant(engine) -> str:
    m = re.match(r"CPU_VARIANT = (\w+) \|", engine.capabilities.system_info)
    assert m, engine.capabilities.system_info
    return m.group(1)


def test_every_variant_is_installed_beside_the_core(llama_cpp_vocab: Path) -> None:
    source = llama_cpp_vocab.parent  # <llama.cpp>/models -> <llama.cpp>
    built = {p.name.split(".so")[0].removeprefix("libggml-cpu-")
             for p in Path(lib_dir()).glob("libggml-cpu-*.so")}
    assert built <= set(_variants(source)) and len(built) >= 10


def test_the_variant_picked_suits_this_cpu_and_none_covers_more(engine, fx,
                                                                 llama_cpp_vocab: Path,
                                                                 record_property) -> None:
    engine.load_model(fx["model_f32"], n_threads=1)
    chosen = _variant(engine)
    variants = _variants(llama_cpp_vocab.parent)
    flags = _cpu_flags()

    def runs_here(feats: set[str]) -> bool:
        return all(CPUINFO_FLAG.get(f, f.lower()) in flags for f in feats)

    assert chosen in variants and runs_here(variants[chosen])
    better = [n for n, feats in variants.items() if runs_here(feats) and feats > variants[chosen]]
    assert not better, f"{chosen} picked, but {better} also run here with more features"
    if "avx512f" in flags:  # the portable build stopped at AVX2
        assert "AVX512 = 1" in engine.capabilities.system_info
    record_property("behaviour", f"picked {chosen}")


def test_found_from_the_library_folder_not_the_working_directory(tmp_path: Path) -> None:
    code = ("from llamart import Engine; e = Engine('native'); "
            "print(e.capabilities.system_info.split(' |')[0])")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("CPU_VARIANT = ")


# ---- every variant this CPU can run, forced one at a time (issue: AMX SIGILL) ----

_LOGITS_CHILD = """
import array, json, sys
from llamart import Engine
e = Engine('native')
e.load_model(sys.argv[1], n_ctx=256, n_threads=2)
info = e.capabilities.system_info
out = {}
for p in sys.argv[2:]:
    out[p] = list(e.logits(p))
print(json.dumps({"info": info, "logits": out}))
"""
_PROMPTS = ["The capital of France is", "Once upon a time, in a land far away, there lived"]
# Q4 weights are requantised per variant (AMX/VNNI int8 dot products round differently from
# the plain float path): agreement is measured relative to the largest logit
_TOL = {"model_f32": 2e-3, "smollm2": 0.06}


def _variant_table() -> list[tuple[str, int, str]]:
    from llamart.bindings.native import NativeBackend

    return NativeBackend().cpu_variants()


def _run_forced(variant: str | None, model: str, env_extra: dict[str, str] | None = None
                ) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
           "GGML_NO_BACKTRACE": "1", **(env_extra or {})}
    env.pop("LLAMART_CPU_VARIANT", None)
    if variant is not None:
        env["LLAMART_CPU_VARIANT"] = variant
    return subprocess.run([sys.executable, "-c", _LOGITS_CHILD, model, *_PROMPTS],
                          capture_output=True, text=True, timeout=300, env=env)


def _logits_of(variant: str | None, model: str) -> dict:
    out = _run_forced(variant, model)
    if out.returncode < 0:
        sig = signal.Signals(-out.returncode).name
        pytest.fail(f"variant {variant}: the process died of signal {sig} "
                    f"({-out.returncode})\n{out.stderr[-2000:]}")
    assert out.returncode == 0, f"variant {variant}: exit {out.returncode}\n{out.stderr[-3000:]}"
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_variant_table_names_the_pick_and_ggml_scores() -> None:
    table = _variant_table()
    assert len(table) >= 10
    picked = [name for name, _score, status in table if status == "picked"]
    assert len(picked) == 1
    scores = [score for _n, score, _s in table]
    assert scores == sorted(scores, reverse=True)  # best first
    usable = [n for n, score, status in table if score > 0 and not status.startswith("probe")]
    assert picked[0] == usable[0]  # the best-scoring variant whose probe passed
    assert ("x64", 1) in [(n, 1 if s > 0 else 0) for n, s, _ in table]


@pytest.mark.parametrize("model_name", ["model_f32", "smollm2"])
def test_every_runnable_variant_agrees_with_x64(model_name: str, fx, real_model,
                                                record_property) -> None:
    model = fx[model_name] if model_name in fx else real_model(model_name)
    ref = _logits_of("x64", model)
    assert "CPU_VARIANT = x64" in ref["info"]
    worst: dict[str, float] = {}
    for name, score, _status in _variant_table():
        if score <= 0 or name == "x64":
            continue
        got = _logits_of(name, model)
        assert f"CPU_VARIANT = {name} |" in got["info"]
        for prompt in _PROMPTS:
            a, b = ref["logits"][prompt], got["logits"][prompt]
            scale = max(abs(x) for x in a)
            diff = max(abs(x - y) for x, y in zip(a, b, strict=False)) / scale
            worst[name] = max(worst.get(name, 0.0), diff)
            assert diff <= _TOL[model_name], (name, prompt, diff)
            # the same next token (the largest logit) unless it is a near tie
            top = sorted(range(len(a)), key=a.__getitem__)[-2:]
            if a[top[1]] - a[top[0]] > 2 * _TOL[model_name] * scale:
                assert max(range(len(b)), key=b.__getitem__) == top[1], (name, prompt)
    record_property("behaviour", "max |logit diff| / max |logit| vs x64: " +
                    ", ".join(f"{k} {v:.1e}" for k, v in sorted(worst.items())))


def test_a_variant_whose_probe_fails_falls_back_to_the_next_best(fx) -> None:
    table = [(n, s) for n, s, _st in _variant_table() if s > 0]
    best, second = table[0][0], table[1][0]
    out = _run_forced(None, fx["model_f32"], {"LLAMART_CPU_PROBE_FAIL": best})
    assert out.returncode == 0, out.stderr[-3000:]
    info = json.loads(out.stdout.strip().splitlines()[-1])["info"]
    assert f"CPU_VARIANT = {second} |" in info
    assert f"CPU_VARIANT_REASON = fallback: {best}: its probe died of SIGILL" in info


def test_forcing_an_unknown_or_failing_variant_is_a_clear_error(fx) -> None:
    out = _run_forced("pentium3", fx["model_f32"])
    assert out.returncode == 1
    assert "LLAMART_CPU_VARIANT=pentium3: no such CPU variant" in out.stderr
    assert "x64" in out.stderr  # the names that exist
    best = _variant_table()[0][0]
    out = _run_forced(best, fx["model_f32"], {"LLAMART_CPU_PROBE_FAIL": best})
    assert out.returncode == 1
    assert f"LLAMART_CPU_VARIANT={best}: unusable here, its probe died of SIGILL" in out.stderr


def test_llamart_info_says_the_cpu_and_the_variant_picked() -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    out = subprocess.run([sys.executable, "-m", "llamart", "info"], capture_output=True,
                         text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    model = next(line.split(":", 1)[1].strip() for line in
                 Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name"))
    assert model in out.stdout
    picked = next(n for n, _s, st in _variant_table() if st == "picked")
    assert re.search(rf"CPU variant:\s+{picked} \(", out.stdout), out.stdout
