"""The WebAssembly build computes what the native build computes (F32 model, greedy).

Runs natively: the wasm module runs in a Node subprocess (wasm/greedy_node.cjs) and reports the
prompt's tokens, the next-token logits and a greedy continuation as JSON. A missing wasm build
or Node is a failure that says how to build, never a silent skip.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(
    sys.platform == "emscripten", reason="compares the native build with wasm: native only"
)

REPO = Path(__file__).resolve().parents[1]
PROMPT = "The quick brown fox jumps over the lazy dog"
N_TOKENS = 24
N_CTX = 256


def _wasm_dir() -> Path:
    folder = Path(os.environ.get("LLAMART_WASM_DIR") or REPO / "build-wasm" / "wasm")
    missing = [n for n in ("llamart_wasm.js", "llamart_wasm.wasm") if not (folder / n).exists()]
    if missing:
        pytest.fail(
            f"the WebAssembly build is missing ({', '.join(missing)} in {folder}): build it with "
            "`python -m wasm.build` (Debian's emscripten; see wasm/README.md) or set "
            "LLAMART_WASM_DIR to a folder holding llamart_wasm.js/.wasm",
            pytrace=False,
        )
    if shutil.which("node") is None:
        pytest.fail("node is not on PATH: the wasm side of this test runs in Node", pytrace=False)
    return folder


def _run_wasm(model: str) -> dict:
    proc = subprocess.run(
        ["node", str(REPO / "wasm" / "greedy_node.cjs"), str(_wasm_dir()), model, PROMPT,
         str(N_TOKENS), str(N_CTX)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, f"wasm run failed:\n{proc.stderr[-4000:]}"
    return json.loads(proc.stdout)


def _run_native(model: str) -> dict:
    from llamart.bindings.native import NativeBackend
    from llamart.params import GenerationParams, ModelParams

    backend = NativeBackend()
    try:
        backend.load_model(model, ModelParams(n_ctx=N_CTX, n_batch=64, use_mmap=False), 1)
        tokens = backend.tokenize(PROMPT, add_special=True, parse_special=False)
        backend.eval_prompt(tokens)
        logits = backend.logits().tolist()
        greedy = GenerationParams(temperature=0.0, top_k=0, top_p=1.0, min_p=0.0,
                                  repeat_penalty=1.0, repeat_last_n=64)
        backend.sampler_init(greedy, 0)
        backend.sampler_accept(tokens)
        generated, _end = backend.next_tokens(N_TOKENS, eval_last=True)
        return {"prompt_tokens": tokens, "logits": logits, "generated": generated}
    finally:
        backend.dispose()


@pytest.fixture(scope="module")
def runs(fx: dict[str, str]) -> tuple[dict, dict]:
    model = fx["model_f32"]
    return _run_native(model), _run_wasm(model)


def test_same_prompt_tokens(runs: tuple[dict, dict]) -> None:
    native, wasm = runs
    assert wasm["prompt_tokens"] == native["prompt_tokens"]


def test_next_token_logits_agree(runs: tuple[dict, dict]) -> None:
    native, wasm = runs
    assert len(wasm["logits"]) == len(native["logits"]) > 0
    assert all(math.isfinite(x) for x in wasm["logits"])
    worst = max(abs(a - b) for a, b in zip(native["logits"], wasm["logits"], strict=True))
    assert worst <= 1e-3, f"max |native - wasm| logit difference {worst:.3g} > 1e-3"
    # the logits are not all equal (a broken build giving a constant vector would agree too)
    assert max(native["logits"]) - min(native["logits"]) > 1e-2


def test_greedy_generation_matches(runs: tuple[dict, dict]) -> None:
    native, wasm = runs
    assert len(native["generated"]) > 1
    assert wasm["generated"] == native["generated"]


def test_wasm_build_uses_simd(runs: tuple[dict, dict]) -> None:
    _, wasm = runs
    assert "WASM_SIMD = 1" in wasm["system_info"], wasm["system_info"]
