"""The relaxed-SIMD module variants (``python -m wasm.build --relaxed``, wasm/relaxed/).

Natively, in Node: the glue loads a relaxed build only where the engine validates relaxed SIMD
(Node 20 only with ``--experimental-wasm-relaxed-simd``), and the relaxed single-threaded
module computes the next-token logits bit for bit as the plain one (its q4_1 block step sums the
same integers in the same lanes; tests/test_wasm_mat_vec.py compares each module's four-row
kernels with ggml's one-row calls). The variants are an opt-in build: without them the
comparison is skipped, saying so.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.wasm_node import greedy_node, relaxed_simd_flag

REPO = Path(__file__).resolve().parents[1]
GLUE = REPO / "wasm" / "llamart_pyodide.js"
PROMPT = "The quick brown fox jumps over the lazy dog"

pytestmark = pytest.mark.skipif(sys.platform == "emscripten" or shutil.which("node") is None,
                                reason="plain Node, natively")


_CHOOSE = """
const G = require(%(glue)s);
const o = {glue: "s.js", wasm: "s.wasm", relaxed: {glue: "sr.js", wasm: "sr.wasm"},
           threaded: {glue: "t.js", wasm: "t.wasm", relaxed: {glue: "tr.js", wasm: "tr.wasm"}}};
console.log(JSON.stringify({probe: G.relaxedSimdAvailable(),
  single: G.chooseBuild({...o, threads: false}).glue,
  threads: G.chooseBuild({...o, threads: true}).glue,
  off: G.chooseBuild({...o, threads: true, relaxedSimd: false}).glue,
  none: G.chooseBuild({glue: "s.js", wasm: "s.wasm", threads: false}).glue}));
"""


@pytest.mark.parametrize("enabled", [True, False], ids=["relaxed", "plain"])
def test_the_glue_loads_relaxed_only_where_it_validates(enabled: bool) -> None:
    flag = list(relaxed_simd_flag())
    if not enabled and not flag:
        pytest.skip("this Node runs relaxed SIMD unconditionally: nothing to turn off")
    args = flag if enabled else []
    script = _CHOOSE % {"glue": json.dumps(str(GLUE))}
    got = json.loads(subprocess.run(["node", *args, "-e", script], capture_output=True,
                                    text=True, check=True).stdout)
    assert got["probe"] is enabled
    assert (got["single"], got["threads"]) == (("sr.js", "tr.js") if enabled else ("s.js", "t.js"))
    assert got["off"] == "t.js" and got["none"] == "s.js"


@pytest.mark.parametrize("model_name", ["smollm2", "model_q4_1", "model_q8_0"])
def test_the_relaxed_module_computes_the_plain_ones_logits(real_model, fx, model_name: str) -> None:
    """Bit for bit against the plain module: SmolLM2 (Q4_1 layers, a Q8_0 output matrix) and
    the tiny Q4_1 and Q8_0 models."""
    folder = Path(os.environ.get("LLAMART_WASM_DIR") or REPO / "build-wasm" / "wasm")
    names = ("llamart_wasm", "llamart_wasm_relaxed")
    if not all((folder / f"{n}.wasm").exists() for n in names):
        pytest.skip(f"no relaxed-SIMD build beside the plain one in {folder} "
                    "(python -m wasm.build --relaxed)")
    model = real_model("smollm2") if model_name == "smollm2" else fx[model_name]
    runs = {name: greedy_node(folder, name, model, PROMPT) for name in names}
    plain, relaxed = runs["llamart_wasm"], runs["llamart_wasm_relaxed"]
    assert relaxed["prompt_tokens"] == plain["prompt_tokens"]
    assert len(plain["logits"]) > 1000 and len(set(plain["logits"])) > 100
    assert relaxed["logits"] == plain["logits"]  # bit for bit, every row
    assert relaxed["generated"] == plain["generated"]
