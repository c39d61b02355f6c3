"""Write every test fixture into a folder: ``python -m llamart.testing.fixtures OUTDIR``.

Writes OUTDIR/manifest.json mapping fixture name -> file name (relative to OUTDIR), so the
Pyodide test run (which has no numpy) can use files made natively.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable

from .mutate import make_lying_header

MANIFEST = "manifest.json"


def _recipes(out: str) -> dict[str, Callable[[str], str]]:
    from llamart.testing import models as m  # numpy + gguf: only when building

    base = os.path.join(out, "model_f32.gguf")
    return {
        "model_f32": lambda p: m.make_model(p, dtype="f32"),
        "model_f16": lambda p: m.make_model(p, dtype="f16"),
        "model_q8_0": lambda p: m.make_model(p, dtype="q8_0"),
        "model_q4_1": lambda p: m.make_model(p, dtype="q4_1"),
        "model_tiny_ctx": lambda p: m.make_model(p, n_ctx=64),
        "model_no_template": lambda p: m.make_model(p, chat_template=None),
        "model_n32": lambda p: m.make_model(p, n_embd=32, n_ff=64, seed=3),
        "model_pooling_last": lambda p: m.make_model(p, extra_kv={"llama.pooling_type": 3}),
        "lora_a": lambda p: m.make_adapter(p, rank=8, alpha=16.0, targets=("attn_q", "attn_v"),
                                           seed=1, task_name="test-a"),
        "lora_b": lambda p: m.make_adapter(p, rank=4, alpha=0.0,
                                           targets=("ffn_up", "ffn_gate", "ffn_down"), seed=2),
        "lora_c": lambda p: m.make_adapter(
            p, rank=16, alpha=16.0, targets=("attn_q", "attn_k", "attn_v", "attn_output"),
            seed=3),
        "lora_zero": lambda p: m.make_adapter(p, rank=8, alpha=16.0, zero_b=True, seed=4),
        "bad_shape": m.make_bad_shape_adapter,
        "bad_arch": m.make_bad_arch_adapter,
        "bad_unknown_tensor": m.make_unknown_tensor_adapter,
        "bad_model_as_adapter": m.make_model_typed_adapter,
        "bad_missing_half": m.make_missing_half_adapter,
        "bad_garbage": m.make_garbage,
        "bad_empty": m.make_empty,
        "bad_truncated": lambda p: m.make_truncated(p, base),
        "bad_lying_n_tensors": lambda p: make_lying_header(p, base, "n_tensors"),
        "bad_lying_n_kv": lambda p: make_lying_header(p, base, "n_kv"),
        "bad_lying_string": lambda p: make_lying_header(p, base, "string"),
        "bad_lying_array": lambda p: make_lying_header(p, base, "array"),
        "bad_lying_dims": lambda p: make_lying_header(p, base, "dims"),
    }


def build(out: str | os.PathLike[str]) -> dict[str, str]:
    """Write all fixtures and the manifest into ``out``; returns name -> absolute path."""
    out = os.path.abspath(os.fspath(out))
    os.makedirs(out, exist_ok=True)
    manifest: dict[str, str] = {}
    for name, make in _recipes(out).items():
        filename = name + (".bin" if name in ("bad_garbage", "bad_empty") else ".gguf")
        make(os.path.join(out, filename))
        manifest[name] = filename
    with open(os.path.join(out, MANIFEST), "w") as f:
        json.dump(manifest, f, indent=1, sort_keys=True)
    return {k: os.path.join(out, v) for k, v in manifest.items()}


def load(out: str | os.PathLike[str]) -> dict[str, str]:
    """Read OUTDIR/manifest.json (pure Python) -> name -> absolute path."""
    out = os.path.abspath(os.fspath(out))
    with open(os.path.join(out, MANIFEST)) as f:
        manifest = json.load(f)
    return {k: os.path.join(out, v) for k, v in manifest.items()}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m llamart.testing.fixtures OUTDIR", file=sys.stderr)
        return 2
    paths = build(args[0])
    print(f"wrote {len(paths)} fixtures to {os.path.abspath(args[0])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
