"""The relaxed-SIMD module variants (``python -m wasm.build --relaxed``, wasm/relaxed/).

Natively, in Node: the glue loads a relaxed build only where the engine validates relaxed SIMD
(Node 20 only with ``--experimental-wasm-relaxed-simd``), and the relaxed single-threaded
module computes the next-token logits bit for bit as the plain one (its q4_1 kernel sums the same
integers in the same lanes, and its four-row matrix-vector kernels give each row the one-row
kernel's floats). The variants are an opt-in build: without them the
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

REPO = Path(__file__).resolve().parents[1]
GLUE = REPO / "wasm" / "llamart_pyodide.js"
PROMPT = "The quick brown fox jumps over the lazy dog"

pytestmark = pytest.mark.skipif(sys.platform == "emscripten" or shutil.which("node") is None,
                                reason="plain Node, natively")


def _relaxed_flag() -> list[str]:
    """Node's flag for relaxed SIMD where it is still behind one (Node 20), else none."""
    opts = subprocess.run(["node", "--v8-options"], capture_output=True, text=True).stdout
    return ["--experimental-wasm-relaxed-simd"] if "experimental-wasm-relaxed-simd" in opts else []


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
    flag = _relaxed_flag()
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
    """Bit for bit against ggml's own kernels (the plain module): SmolLM2 (Q4_1 layers, a Q8_0
    output matrix) and the tiny Q4_1 and Q8_0 models, whose 1,115-row output matrix also takes
    the rows left over after the four-row kernels (1,115 = 4 x 278 + 3)."""
    folder = Path(os.environ.get("LLAMART_WASM_DIR") or REPO / "build-wasm" / "wasm")
    names = ("llamart_wasm", "llamart_wasm_relaxed")
    if not all((folder / f"{n}.wasm").exists() for n in names):
        pytest.skip(f"no relaxed-SIMD build beside the plain one in {folder} "
                    "(python -m wasm.build --relaxed)")
    model = real_model("smollm2") if model_name == "smollm2" else fx[model_name]
    runs = {}
    for name in names:
        proc = subprocess.run(
            ["node", *_relaxed_flag(), str(REPO / "wasm" / "greedy_node.cjs"), str(folder),
             model, PROMPT, "8", "256"],
            capture_output=True, text=True, timeout=300,
            env={**os.environ, "LLAMART_WASM_NAME": name})
        assert proc.returncode == 0, f"{name} failed:\n{proc.stderr[-4000:]}"
        runs[name] = json.loads(proc.stdout)
    plain, relaxed = runs["llamart_wasm"], runs["llamart_wasm_relaxed"]
    assert relaxed["prompt_tokens"] == plain["prompt_tokens"]
    assert len(plain["logits"]) > 1000 and len(set(plain["logits"])) > 100
    assert relaxed["logits"] == plain["logits"]  # bit for bit, every row
    assert relaxed["generated"] == plain["generated"]
