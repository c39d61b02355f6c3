"""The WebAssembly modules' four-row matrix-vector kernels (wasm/mat_vec/,
cmake/patches/wasm-mat-vec.patch) against ggml's own one-row calls.

Natively, in Node: each single-threaded module (plain, and relaxed where built) computes the
next-token logits and greedy tokens once as built and once with ``LLAMART_WASM_MAT_VEC=0`` in its
environment, which keeps ggml's one-row kernels: they must be the same bits. The module's
system info says which path ran, so the reference run cannot silently take the new one. Models:
SmolLM2 (Q4_1 layers, a Q8_0 output matrix) and the tiny Q4_1 and Q8_0 models, whose 1,115-row
output matrix also takes the rows left over after the fours (1,115 = 4 x 278 + 3).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from tests.support.wasm_node import greedy_node

REPO = Path(__file__).resolve().parents[1]
PROMPT = "The quick brown fox jumps over the lazy dog"

pytestmark = pytest.mark.skipif(sys.platform == "emscripten" or shutil.which("node") is None,
                                reason="plain Node, natively")


@pytest.mark.parametrize("module", ["llamart_wasm", "llamart_wasm_relaxed"])
@pytest.mark.parametrize("model_name", ["smollm2", "model_q4_1", "model_q8_0"])
def test_four_row_kernels_give_ggml_one_row_bits(real_model, fx, module: str,
                                                 model_name: str) -> None:
    folder = Path(os.environ.get("LLAMART_WASM_DIR") or REPO / "build-wasm" / "wasm")
    if not (folder / f"{module}.wasm").exists():
        pytest.skip(f"no {module}.wasm in {folder} (python -m wasm.build"
                    f"{' --relaxed' if 'relaxed' in module else ''})")
    model = real_model("smollm2") if model_name == "smollm2" else fx[model_name]
    ours = greedy_node(folder, module, model, PROMPT)
    ggml = greedy_node(folder, module, model, PROMPT, env={"LLAMART_WASM_MAT_VEC": "0"})
    assert "WASM_MAT_VEC = 1" in ours["system_info"], ours["system_info"]
    assert "WASM_MAT_VEC = 0" in ggml["system_info"], ggml["system_info"]
    assert ours["prompt_tokens"] == ggml["prompt_tokens"]
    assert len(ggml["logits"]) > 1000 and len(set(ggml["logits"])) > 100
    assert ours["logits"] == ggml["logits"]  # bit for bit, every row
    assert ours["generated"] == ggml["generated"]
