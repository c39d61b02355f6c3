"""SmolLM2 (llama architecture) in JAX: weights from a GGUF, forward pass with LoRA deltas.

Weights are dequantized to float32 with ``gguf.quants.dequantize``.  llama.cpp's converter
stores q/k rows permuted for its interleaved ("normal") RoPE; they are un-permuted here to the
Hugging Face layout, and RoPE is applied the Hugging Face way (rotate-half), so every weight and
LoRA matrix in this module is in Hugging Face convention (numpy shape (out, in)).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import gguf
import jax
import jax.numpy as jnp
import numpy as np

# Hugging Face module name -> (GGUF tensor suffix, stacked-weight key)
MODULES: dict[str, tuple[str, str]] = {
    "q_proj": ("attn_q", "wq"), "k_proj": ("attn_k", "wk"), "v_proj": ("attn_v", "wv"),
    "o_proj": ("attn_output", "wo"), "gate_proj": ("ffn_gate", "wg"),
    "up_proj": ("ffn_up", "wu"), "down_proj": ("ffn_down", "wd"),
}
PEFT_PARENT = {"q_proj": "self_attn", "k_proj": "self_attn", "v_proj": "self_attn",
               "o_proj": "self_attn", "gate_proj": "mlp", "up_proj": "mlp", "down_proj": "mlp"}
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def default_base() -> str | None:
    """The SmolLM2 GGUF: env LLAMART_SMOLLM2, the pinned fetch's verified cache
    (``python -m llamart models fetch smollm2``), .cache/models/, /tmp/models/."""
    from llamart.pinned_models import cached_path

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    pinned = cached_path("smollm2")
    for cand in (os.environ.get("LLAMART_SMOLLM2"), pinned and str(pinned),
                 os.path.join(root, ".cache", "models", MODEL_FILE),
                 os.path.join("/tmp/models", MODEL_FILE)):
        if cand and os.path.isfile(cand):
            return cand
    return None


@dataclass(frozen=True)
class Config:
    """Hyper-parameters read from the GGUF metadata."""

    n_layer: int
    n_embd: int
    n_ff: int
    n_head: int
    n_head_kv: int
    n_vocab: int
    rope_theta: float
    rms_eps: float

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head


def _field(reader: gguf.GGUFReader, key: str) -> Any:
    field = reader.get_field(key)
    if field is None:
        raise ValueError(f"{reader.data.filename}: no {key} in the GGUF metadata")
    return field.contents()


def unpermute(w: np.ndarray, n_head: int) -> np.ndarray:
    """Undo llama.cpp's converter permutation of q/k rows (back to Hugging Face order)."""
    out = w.shape[0]
    return w.reshape(n_head, out // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's converter permutation (LlamaModel.permute): Hugging Face -> GGUF rows."""
    out = w.shape[0]
    return w.reshape(n_head, 2, out // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def load_weights(path: str) -> tuple[Config, dict[str, np.ndarray]]:
    """Config and float32 weights (per-layer tensors stacked on axis 0), Hugging Face layout."""
    reader = gguf.GGUFReader(path)
    arch = _field(reader, "general.architecture")
    if arch != "llama":
        raise ValueError(f"{path}: architecture {arch!r}, this trainer supports llama only")
    cfg = Config(
        n_layer=int(_field(reader, "llama.block_count")),
        n_embd=int(_field(reader, "llama.embedding_length")),
        n_ff=int(_field(reader, "llama.feed_forward_length")),
        n_head=int(_field(reader, "llama.attention.head_count")),
        n_head_kv=int(_field(reader, "llama.attention.head_count_kv")),
        n_vocab=len(_field(reader, "tokenizer.ggml.tokens")),
        rope_theta=float(_field(reader, "llama.rope.freq_base")),
        rms_eps=float(_field(reader, "llama.attention.layer_norm_rms_epsilon")),
    )
    tensors = {t.name: t for t in reader.tensors}

    def get(name: str) -> np.ndarray:
        t = tensors[name]
        arr = gguf.quants.dequantize(t.data, t.tensor_type)
        return np.ascontiguousarray(arr.reshape([int(n) for n in reversed(t.shape)]),
                                    dtype=np.float32)

    w: dict[str, np.ndarray] = {"embd": get("token_embd.weight"),
                                "norm": get("output_norm.weight")}
    if "output.weight" in tensors:
        w["out"] = get("output.weight")
    per_layer: dict[str, list[np.ndarray]] = {}
    for i in range(cfg.n_layer):
        for hf, (suffix, key) in MODULES.items():
            arr = get(f"blk.{i}.{suffix}.weight")
            if hf == "q_proj":
                arr = unpermute(arr, cfg.n_head)
            elif hf == "k_proj":
                arr = unpermute(arr, cfg.n_head_kv)
            per_layer.setdefault(key, []).append(arr)
        per_layer.setdefault("attn_norm", []).append(get(f"blk.{i}.attn_norm.weight"))
        per_layer.setdefault("ffn_norm", []).append(get(f"blk.{i}.ffn_norm.weight"))
    w.update({k: np.stack(v) for k, v in per_layer.items()})
    return cfg, w


def init_lora(cfg: Config, targets: list[str], rank: int, seed: int) -> dict[str, jax.Array]:
    """PEFT's default init: A ~ kaiming-uniform(a=sqrt(5)) = U(-1/sqrt(in), 1/sqrt(in)), B = 0."""
    shapes = {"q_proj": (cfg.n_embd, cfg.n_embd),
              "k_proj": (cfg.n_head_kv * cfg.head_dim, cfg.n_embd),
              "v_proj": (cfg.n_head_kv * cfg.head_dim, cfg.n_embd),
              "o_proj": (cfg.n_embd, cfg.n_embd), "gate_proj": (cfg.n_ff, cfg.n_embd),
              "up_proj": (cfg.n_ff, cfg.n_embd), "down_proj": (cfg.n_embd, cfg.n_ff)}
    key = jax.random.PRNGKey(seed)
    lora: dict[str, jax.Array] = {}
    for name in targets:
        n_out, n_in = shapes[name]
        key, sub = jax.random.split(key)
        bound = 1.0 / np.sqrt(n_in)
        lora[f"{name}.A"] = jax.random.uniform(sub, (cfg.n_layer, rank, n_in), jnp.float32,
                                               -bound, bound)
        lora[f"{name}.B"] = jnp.zeros((cfg.n_layer, n_out, rank), jnp.float32)
    return lora


def _rms(x: jax.Array, g: jax.Array, eps: float) -> jax.Array:
    return x * jax.lax.rsqrt(jnp.mean(x * x, axis=-1, keepdims=True) + eps) * g


def _rope(x: jax.Array, pos: jax.Array, theta: float) -> jax.Array:
    """Hugging Face rotate-half RoPE; x (B, T, H, D), pos (B, T)."""
    d = x.shape[-1]
    inv = 1.0 / (theta ** (jnp.arange(0, d, 2, dtype=jnp.float32) / d))
    ang = pos[..., None].astype(jnp.float32) * inv  # (B, T, D/2)
    ang = jnp.concatenate([ang, ang], axis=-1)[:, :, None, :]
    x1, x2 = x[..., : d // 2], x[..., d // 2:]
    return x * jnp.cos(ang) + jnp.concatenate([-x2, x1], axis=-1) * jnp.sin(ang)


def forward(cfg: Config, w: dict[str, jax.Array], lora: dict[str, jax.Array], scale: float,
            tokens: jax.Array, pos: jax.Array, seg: jax.Array) -> jax.Array:
    """Logits (B, T, vocab).  ``pos`` restarts per packed example; tokens attend only to
    earlier tokens of the same ``seg``.  LoRA: W x + scale * B (A x), scale = alpha / r."""
    return head(w, hidden(cfg, w, lora, scale, tokens, pos, seg))


def head(w: dict[str, jax.Array], h: jax.Array) -> jax.Array:
    """Logits from final hidden states (tied embeddings when there is no output.weight)."""
    return h @ w.get("out", w["embd"]).T


def hidden(cfg: Config, w: dict[str, jax.Array], lora: dict[str, jax.Array], scale: float,
           tokens: jax.Array, pos: jax.Array, seg: jax.Array) -> jax.Array:
    """Final hidden states (B, T, n_embd), after output_norm (see :func:`forward`)."""
    bsz, t = tokens.shape
    hd, nh, nkv = cfg.head_dim, cfg.n_head, cfg.n_head_kv
    causal = jnp.tril(jnp.ones((t, t), bool))
    mask = causal[None] & (seg[:, :, None] == seg[:, None, :])  # (B, Tq, Tk)
    x = w["embd"][tokens]

    def lin(name: str, key: str, lw: dict[str, jax.Array], h: jax.Array) -> jax.Array:
        y = h @ lw[key].T
        if f"{name}.A" in lw:
            y = y + scale * ((h @ lw[f"{name}.A"].T) @ lw[f"{name}.B"].T)
        return y

    def layer(x: jax.Array, lw: dict[str, jax.Array]) -> tuple[jax.Array, None]:
        h = _rms(x, lw["attn_norm"], cfg.rms_eps)
        q = lin("q_proj", "wq", lw, h).reshape(bsz, t, nh, hd)
        k = lin("k_proj", "wk", lw, h).reshape(bsz, t, nkv, hd)
        v = lin("v_proj", "wv", lw, h).reshape(bsz, t, nkv, hd)
        q, k = _rope(q, pos, cfg.rope_theta), _rope(k, pos, cfg.rope_theta)
        q = q.reshape(bsz, t, nkv, nh // nkv, hd)  # q head h uses kv head h // (nh / nkv)
        att = jnp.einsum("btgrd,bsgd->bgrts", q, k) / np.sqrt(hd)
        att = jnp.where(mask[:, None, None], att, -1e30)
        att = jax.nn.softmax(att, axis=-1)
        o = jnp.einsum("bgrts,bsgd->btgrd", att, v).reshape(bsz, t, nh * hd)
        x = x + lin("o_proj", "wo", lw, o)
        h = _rms(x, lw["ffn_norm"], cfg.rms_eps)
        g = jax.nn.silu(lin("gate_proj", "wg", lw, h)) * lin("up_proj", "wu", lw, h)
        return x + lin("down_proj", "wd", lw, g), None

    stacked = {k: w[k] for k in ("wq", "wk", "wv", "wo", "wg", "wu", "wd",
                                 "attn_norm", "ffn_norm")}
    stacked.update(lora)
    x, _ = jax.lax.scan(layer, x, stacked)
    return _rms(x, w["norm"], cfg.rms_eps)
