"""Runtime CPU dispatch in the native build: ggml's CPU backend variants sit beside
libllamart, the core loads them from its own folder, and the one picked suits this CPU.

The references are independent of llamart: the variant list and each variant's features are read
from the pinned llama.cpp source (ggml/src/CMakeLists.txt), the CPU's features from
/proc/cpuinfo. Native x86-64 Linux only (the WebAssembly module has one SIMD128 backend).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from llamart.backends._cdefs import lib_dir

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
