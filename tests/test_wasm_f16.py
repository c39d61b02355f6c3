"""The WebAssembly builds' four-lane fp16 store (cmake/patches/wasm-f16-store.patch) against
ggml's scalar ggml_compute_fp32_to_fp16, for every one of the 2^32 float bit patterns.

The check is compiled by emcc from the patched, extracted llama.cpp source (the one the modules
are built from) and run in Node (~30 s). ggml's flash attention stores its fp16 V accumulator
through this function for every cached position of every decoded token, so a wrong bit would
change WebAssembly generation; the scalar function is what native builds without F16C and the
plain ggml use.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tools.llama_cpp_pin import source_dir

REPO = Path(__file__).resolve().parents[1]
CHECK = REPO / "tests" / "data" / "wasm_f16_store_check.c"

pytestmark = pytest.mark.skipif(
    sys.platform == "emscripten" or shutil.which("emcc") is None or shutil.which("node") is None,
    reason="natively, with emcc and Node")


def test_every_float_stores_as_ggml_scalar_fp16(tmp_path: Path) -> None:
    ggml = source_dir() / "ggml"
    mappings = ggml / "src" / "ggml-cpu" / "simd-mappings.h"
    if not mappings.exists():
        pytest.skip(f"{mappings} not extracted yet (build llamart first)")
    assert "wasm_v128_store64_lane" in mappings.read_text(), \
        f"{mappings}: cmake/patches/wasm-f16-store.patch is not applied"
    env = dict(os.environ)
    if Path("/usr/share/nodejs/acorn").is_dir():  # Debian's emcc 3.1.6 finds acorn only here
        env["NODE_PATH"] = os.pathsep.join(p for p in ("/usr/share/nodejs",
                                                       env.get("NODE_PATH")) if p)
    out = tmp_path / "check.js"
    subprocess.run(["emcc", "-O2", "-msimd128", f"-I{ggml / 'src'}", f"-I{ggml / 'include'}",
                    str(CHECK), "-o", str(out), "-sENVIRONMENT=node"],
                   check=True, env=env, capture_output=True, timeout=300)
    proc = subprocess.run(["node", "--no-experimental-fetch", str(out)], capture_output=True,
                          text=True, timeout=600)
    assert proc.stdout.strip().endswith("checked 4294967296 mismatches 0"), \
        proc.stdout + proc.stderr
    assert proc.returncode == 0
