"""Prove the JAX forward pass: next-token logits against llama.cpp's on the same tokens.

Compared on the Q4_1 base itself (llama.cpp's quantized kernels, which also round activations
to 8 bits, against our float32 math on the dequantized weights) and, with ``f32=True``, on an
F32 GGUF written by dequantizing every tensor (the same math on both sides).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import gguf
import jax
import jax.numpy as jnp
import numpy as np

from .model import Config, forward

PROMPTS = (
    "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
    "The quick brown fox jumps over the lazy dog. The",
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
    "<|im_end|>\n<|im_start|>user\nWrite a haiku about the sea.<|im_end|>\n"
    "<|im_start|>assistant\n",
    "def fibonacci(n):\n    if n < 2:\n        return n\n    return",
)


@dataclass
class Agreement:
    """Per-prompt figures: top-1 tokens and max |diff| / max |logit| over the vocabulary."""

    top1_ours: list[int]
    top1_ref: list[int]
    rel_diff: list[float]
    top5_overlap: list[int]

    @property
    def top1_equal(self) -> bool:
        return self.top1_ours == self.top1_ref

    @property
    def worst(self) -> float:
        return max(self.rel_diff)

    def __str__(self) -> str:
        rel = ", ".join(f"{d:.2e}" for d in self.rel_diff)
        same = sum(a == b for a, b in zip(self.top1_ours, self.top1_ref, strict=True))
        return (f"top-1 identical {same}"
                f"/{len(self.rel_diff)}, top-5 overlap {self.top5_overlap}, "
                f"max|diff|/max|logit| per prompt: {rel}")


def jax_last_logits(cfg: Config, w: dict[str, jax.Array], tokens: Sequence[int]) -> np.ndarray:
    """Next-token logits after ``tokens`` from the JAX model without LoRA."""
    toks = jnp.asarray([list(tokens)], jnp.int32)
    pos = jnp.arange(len(tokens), dtype=jnp.int32)[None]
    out = forward(cfg, w, {}, 0.0, toks, pos, jnp.zeros_like(toks))
    return np.asarray(out[0, -1])


def llamacpp_logits(model_path: str, token_lists: Sequence[Sequence[int]]) -> list[np.ndarray]:
    """llama.cpp's logits (native backend) for each token list, from a clean state."""
    from llamart import Engine

    with Engine("native") as eng:
        eng.load_model(model_path, n_ctx=512, n_threads=2)
        return [np.asarray(eng.logits(list(t)), dtype=np.float32) for t in token_lists]


def tokenize(model_path: str, texts: Sequence[str]) -> list[list[int]]:
    """Tokens as llama.cpp makes them (ChatML markers parsed as special tokens)."""
    from llamart import Engine

    with Engine("native") as eng:
        eng.load_model(model_path, n_ctx=512, n_threads=2)
        return [eng.tokenize(t, add_special=True, parse_special=True) for t in texts]


def compare(ours: Sequence[np.ndarray], ref: Sequence[np.ndarray]) -> Agreement:
    top1_o = [int(np.argmax(a)) for a in ours]
    top1_r = [int(np.argmax(b)) for b in ref]
    rel = [float(np.max(np.abs(a - b)) / np.max(np.abs(b))) for a, b in zip(ours, ref, strict=True)]
    top5 = [len(set(np.argsort(-a)[:5]) & set(np.argsort(-b)[:5]))
            for a, b in zip(ours, ref, strict=True)]
    return Agreement(top1_o, top1_r, rel, top5)


def write_f32_gguf(src: str, dst: str) -> None:
    """Copy a GGUF with every tensor dequantized to F32 (metadata kept, file_type ALL_F32)."""
    reader = gguf.GGUFReader(src)
    arch = reader.get_field("general.architecture").contents()
    writer = gguf.GGUFWriter(dst, arch=arch)
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture":
            continue
        value = field.contents()
        if key == "general.file_type":
            value = int(gguf.LlamaFileType.ALL_F32)
        sub = field.types[1] if field.types[0] == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(key, value, field.types[0], sub_type=sub)
    for t in reader.tensors:
        arr = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        writer.add_tensor(t.name, arr.reshape([int(n) for n in reversed(t.shape)]))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def check_forward(cfg: Config, w: dict[str, jax.Array], base: str, *,
                  f32_dir: str | None = None) -> dict[str, Agreement]:
    """Agreement of the JAX model with llama.cpp on PROMPTS: on ``base`` and, when
    ``f32_dir`` is given, on an F32 copy of it written there."""
    token_lists = tokenize(base, PROMPTS)
    ours = [jax_last_logits(cfg, w, t) for t in token_lists]
    result = {"q4_1": compare(ours, llamacpp_logits(base, token_lists))}
    if f32_dir is not None:
        path = os.path.join(f32_dir, "base-f32.gguf")
        write_f32_gguf(base, path)
        try:
            result["f32"] = compare(ours, llamacpp_logits(path, token_lists))
        finally:
            os.remove(path)
    return result
