"""Running a llamart WebAssembly module in plain Node (wasm/greedy_node.cjs), natively."""

from __future__ import annotations

import functools
import json
import os
import subprocess
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


@functools.cache
def relaxed_simd_flag() -> tuple[str, ...]:
    """Node's flag for relaxed SIMD where it is still behind one (Node 20), else none."""
    opts = subprocess.run(["node", "--v8-options"], capture_output=True, text=True).stdout
    return ("--experimental-wasm-relaxed-simd",) if "experimental-wasm-relaxed-simd" in opts else ()


def greedy_node(folder: Path, name: str, model: str, prompt: str, n_tokens: int = 8,
                env: dict[str, str] | None = None) -> dict[str, Any]:
    """Module ``name`` of ``folder`` on ``model``: {prompt_tokens, logits, generated,
    system_info} (see wasm/greedy_node.cjs); ``env`` adds to the child's environment."""
    child = {k: v for k, v in os.environ.items() if k != "LLAMART_WASM_MAT_VEC"}
    child.update({"LLAMART_WASM_NAME": name, **(env or {})})
    proc = subprocess.run(
        ["node", *relaxed_simd_flag(), str(REPO / "wasm" / "greedy_node.cjs"), str(folder),
         model, prompt, str(n_tokens), "256"],
        capture_output=True, text=True, timeout=300, env=child)
    assert proc.returncode == 0, f"{name} failed:\n{proc.stderr[-4000:]}"
    return json.loads(proc.stdout)
