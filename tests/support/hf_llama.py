"""A tiny llama in Hugging Face convention, its numpy forward pass, and PEFT folders (native only).

The independent reference for ``llamart.lora``'s converter. Weights are kept as transformers'
``LlamaForCausalLM`` holds them (q/k rows un-permuted, rotate-half RoPE) and ``forward`` follows
transformers' computation in float64. ``write_gguf`` writes the model the way llama.cpp's
``convert_hf_to_gguf.py`` does: the rows of q and k permuted into llama.cpp's interleaved rotary
layout (``LlamaModel.permute``, re-implemented here from its formula, not taken from the code
under test). ``make_peft`` writes what ``PeftModel.save_pretrained`` writes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import safetensors.numpy

from llamart.testing.models import make_model, make_vocab

ATTN = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP = ("gate_proj", "up_proj", "down_proj")
ALL_LINEAR = ATTN + MLP


@dataclass
class HFLlama:
    """Sizes and weights (Hugging Face names, float64) of a tiny llama."""

    n_embd: int
    n_layer: int
    n_head: int
    n_head_kv: int
    n_ff: int
    weights: dict[str, np.ndarray]
    rope_base: float = 10000.0
    eps: float = 1e-5

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head


def make_hf_llama(*, n_embd: int = 64, n_layer: int = 2, n_head: int = 4, n_head_kv: int = 2,
                  n_ff: int = 128, seed: int = 0) -> HFLlama:
    """Random weights for the test tokenizer's vocabulary (untied lm_head)."""
    rng = np.random.default_rng(seed)
    n_vocab = len(make_vocab()[0])
    kv = n_embd // n_head * n_head_kv

    def mat(n_out: int, n_in: int, std: float | None = None) -> np.ndarray:
        return (std or 1.0 / np.sqrt(n_in)) * rng.standard_normal((n_out, n_in))

    def norm() -> np.ndarray:
        return 1.0 + 0.1 * rng.standard_normal(n_embd)

    w = {"model.embed_tokens.weight": mat(n_vocab, n_embd, 1.0)}
    for i in range(n_layer):
        p = f"model.layers.{i}."
        w[p + "input_layernorm.weight"] = norm()
        w[p + "self_attn.q_proj.weight"] = mat(n_embd, n_embd)
        w[p + "self_attn.k_proj.weight"] = mat(kv, n_embd)
        w[p + "self_attn.v_proj.weight"] = mat(kv, n_embd)
        w[p + "self_attn.o_proj.weight"] = mat(n_embd, n_embd)
        w[p + "post_attention_layernorm.weight"] = norm()
        w[p + "mlp.gate_proj.weight"] = mat(n_ff, n_embd)
        w[p + "mlp.up_proj.weight"] = mat(n_ff, n_embd)
        w[p + "mlp.down_proj.weight"] = mat(n_embd, n_ff)
    w["model.norm.weight"] = norm()
    w["lm_head.weight"] = mat(n_vocab, n_embd)
    w = {k: v.astype(np.float32).astype(np.float64) for k, v in w.items()}  # exact in F32
    return HFLlama(n_embd, n_layer, n_head, n_head_kv, n_ff, w)


def llama_cpp_permute(w: np.ndarray, n_head: int, n_head_kv: int | None = None) -> np.ndarray:
    """convert_hf_to_gguf.py's ``LlamaModel.permute(weights, n_head, n_head_kv)``."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2).reshape(w.shape))


_GGUF_NAMES = {
    "input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
    "post_attention_layernorm": "ffn_norm", "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down",
}


def write_gguf(m: HFLlama, path: str | os.PathLike[str], *, dtype: str = "f32",
               permute_qk: bool = True, tied: bool = False) -> str:
    """Write ``m`` as llama.cpp's converter would (``permute_qk=False``: a wrong base;
    ``tied``: no output.weight, as for a model whose lm_head is tied to its embeddings)."""
    t: dict[str, np.ndarray] = {
        "token_embd.weight": m.weights["model.embed_tokens.weight"],
        "output_norm.weight": m.weights["model.norm.weight"],
        "output.weight": m.weights["lm_head.weight"],
    }
    for i in range(m.n_layer):
        for hf, short in _GGUF_NAMES.items():
            data = m.weights[f"model.layers.{i}.{hf}.weight"]
            if permute_qk and short == "attn_q":
                data = llama_cpp_permute(data, m.n_head, m.n_head)
            elif permute_qk and short == "attn_k":
                data = llama_cpp_permute(data, m.n_head, m.n_head_kv)
            t[f"blk.{i}.{short}.weight"] = data
    return make_model(path, n_embd=m.n_embd, n_layer=m.n_layer, n_head=m.n_head,
                      n_head_kv=m.n_head_kv, n_ff=m.n_ff, dtype=dtype, tensors=t,
                      drop=("output.weight",) if tied else ())


def _rms(x: np.ndarray, w: np.ndarray, eps: float) -> np.ndarray:
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def forward(m: HFLlama, tokens: Sequence[int],
            deltas: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
    """Logits (n_tokens, n_vocab) of transformers' Llama on weights ``W + deltas[W]``
    (deltas keyed by module name, e.g. ``model.layers.0.self_attn.q_proj``)."""
    head = m.weights["lm_head.weight"] + (deltas or {}).get("lm_head", 0.0)
    return hidden_states(m, tokens, deltas) @ head.T


def hidden_states(m: HFLlama, tokens: Sequence[int],
                  deltas: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
    """The final hidden states (n_tokens, n_embd), after the last norm: what embeddings pool."""
    w = dict(m.weights)
    for module, d in (deltas or {}).items():
        w[module + ".weight"] = w[module + ".weight"] + d
    n, hd, nh, nkv = len(tokens), m.head_dim, m.n_head, m.n_head_kv
    x = w["model.embed_tokens.weight"][np.asarray(tokens)]
    ang = np.outer(np.arange(n), m.rope_base ** (-np.arange(0, hd, 2) / hd))
    cos, sin = np.cos(np.concatenate([ang, ang], -1)), np.sin(np.concatenate([ang, ang], -1))

    def rope(v: np.ndarray) -> np.ndarray:  # rotate_half: (x1, x2) -> (-x2, x1)
        rot = np.concatenate([-v[..., hd // 2:], v[..., : hd // 2]], -1)
        return v * cos[:, None, :] + rot * sin[:, None, :]

    mask = np.triu(np.full((n, n), -np.inf), 1)
    for i in range(m.n_layer):
        p = f"model.layers.{i}."
        h = _rms(x, w[p + "input_layernorm.weight"], m.eps)
        q = rope((h @ w[p + "self_attn.q_proj.weight"].T).reshape(n, nh, hd))
        k = rope((h @ w[p + "self_attn.k_proj.weight"].T).reshape(n, nkv, hd))
        v = (h @ w[p + "self_attn.v_proj.weight"].T).reshape(n, nkv, hd)
        k, v = np.repeat(k, nh // nkv, axis=1), np.repeat(v, nh // nkv, axis=1)  # repeat_kv
        s = np.einsum("thd,shd->hts", q, k) / np.sqrt(hd) + mask
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        o = np.einsum("hts,shd->thd", s, v).reshape(n, m.n_embd)
        x = x + o @ w[p + "self_attn.o_proj.weight"].T
        h = _rms(x, w[p + "post_attention_layernorm.weight"], m.eps)
        g = h @ w[p + "mlp.gate_proj.weight"].T
        x = x + ((g / (1.0 + np.exp(-g))) * (h @ w[p + "mlp.up_proj.weight"].T)) \
            @ w[p + "mlp.down_proj.weight"].T
    return _rms(x, w["model.norm.weight"], m.eps)


def module_shapes(m: HFLlama) -> dict[str, tuple[int, int]]:
    """Module name (``model.layers.0.self_attn.q_proj``...) -> its weight's (n_out, n_in)."""
    return {k[: -len(".weight")]: v.shape for k, v in m.weights.items() if v.ndim == 2}


def gguf_module_shapes(path: str | os.PathLike[str]) -> dict[str, tuple[int, int]]:
    """The same for a llama GGUF model (for a PEFT folder fitting a real model's shapes)."""
    from llamart.gguf import read_header

    short = {v: k for k, v in _GGUF_NAMES.items()}
    out: dict[str, tuple[int, int]] = {}
    for t in read_header(path).tensors:
        parts = t.name.split(".")
        if len(t.shape) != 2:
            continue
        shape = (int(t.shape[1]), int(t.shape[0]))
        if t.name == "token_embd.weight":
            out["model.embed_tokens"] = shape
        elif t.name == "output.weight":
            out["lm_head"] = shape
        elif parts[0] == "blk" and parts[2] in short:
            out[f"model.layers.{parts[1]}.{short[parts[2]]}"] = shape
    return out


def _module_names(shapes: Mapping[str, tuple[int, int]], targets: Sequence[str]) -> list[str]:
    """The modules of ``shapes`` whose last part is one of ``targets`` ("q_proj",
    "embed_tokens", "lm_head"...), in layer order."""
    def key(name: str) -> tuple[int, str]:
        digits = [int(p) for p in name.split(".") if p.isdigit()]
        return (digits[0] if digits else -1, name)
    return sorted((n for n in shapes if n.split(".")[-1] in targets), key=key)


@dataclass
class PeftPair:
    """One module's PEFT tensors and its rank and alpha, as the test chose them."""

    a: np.ndarray
    b: np.ndarray
    r: int
    alpha: float
    embedding: bool = False

    def delta(self, scale: float, rslora: bool = False) -> np.ndarray:
        """PEFT's merged delta ``scale * scaling * B @ A`` (transposed for embeddings)."""
        scaling = self.alpha / (np.sqrt(self.r) if rslora else self.r)
        d = scale * scaling * (self.b @ self.a)
        return d.T if self.embedding else d


def make_peft(folder: str | os.PathLike[str], shapes: Mapping[str, tuple[int, int]], *,
              targets: Sequence[str] = ALL_LINEAR, r: int = 8, lora_alpha: float = 16.0,
              ranks: Mapping[str, int] | None = None, alphas: Mapping[str, float] | None = None,
              use_rslora: bool = False, seed: int = 1, b_std: float = 0.3,
              dtype: Any = np.float32, config: Mapping[str, Any] | None = None
              ) -> dict[str, PeftPair]:
    """Write ``adapter_config.json`` + ``adapter_model.safetensors`` with random A and B
    for the ``targets`` among ``shapes`` (module -> weight shape: ``module_shapes(m)``).

    ``ranks``/``alphas`` map a module name or its last parts ("q_proj",
    "model.layers.1.mlp.down_proj") to its own rank/alpha; they are written as PEFT's
    ``rank_pattern``/``alpha_pattern``. ``config`` entries override the written config.
    ``dtype``: a numpy float type, or "bf16" (what PEFT saves from a bfloat16 model).
    Returns module -> PeftPair, in float64 as written (after the dtype's rounding).
    """
    bf16 = isinstance(dtype, str) and dtype == "bf16"
    if bf16:
        dtype = np.float32
    rng = np.random.default_rng(seed)
    ranks, alphas = dict(ranks or {}), dict(alphas or {})

    def pick(table: Mapping[str, Any], module: str, default: Any) -> Any:
        for key, value in table.items():
            if module == key or module.endswith("." + key):
                return value
        return default

    pairs: dict[str, PeftPair] = {}
    tensors: dict[str, np.ndarray] = {}
    for module in _module_names(shapes, targets):
        rank = pick(ranks, module, r)
        n_out, n_in = shapes[module]
        embedding = module == "model.embed_tokens"
        if embedding:  # nn.Embedding: A (r, n_vocab), B (n_embd, r); delta = (B @ A).T
            n_out, n_in = n_in, n_out
        a = (rng.standard_normal((rank, n_in)) / np.sqrt(n_in)).astype(dtype)
        b = (b_std / np.sqrt(rank) * rng.standard_normal((n_out, rank))).astype(dtype)
        if bf16:  # keep the upper 16 bits: exactly representable in bfloat16
            a, b = (_bf16_round(x) for x in (a, b))
        names = ("lora_embedding_A", "lora_embedding_B") if embedding else \
            ("lora_A.weight", "lora_B.weight")
        tensors[f"base_model.model.{module}.{names[0]}"] = a
        tensors[f"base_model.model.{module}.{names[1]}"] = b
        pairs[module] = PeftPair(a.astype(np.float64), b.astype(np.float64), rank,
                                 float(pick(alphas, module, lora_alpha)), embedding)
    os.makedirs(folder, exist_ok=True)
    st = os.path.join(folder, "adapter_model.safetensors")
    if bf16:
        _save_bf16(tensors, st)
    else:
        safetensors.numpy.save_file(tensors, st, metadata={"format": "pt"})
    cfg: dict[str, Any] = {
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": "tiny-llama",
        "r": r, "lora_alpha": lora_alpha, "lora_dropout": 0.0, "bias": "none",
        "target_modules": sorted(set(targets)), "use_rslora": use_rslora, "use_dora": False,
        "modules_to_save": None, "rank_pattern": ranks, "alpha_pattern": alphas,
        "fan_in_fan_out": False, "init_lora_weights": True, "layers_to_transform": None,
        "layers_pattern": None, "inference_mode": True, "revision": None,
    }
    cfg.update(config or {})
    with open(os.path.join(folder, "adapter_config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    return pairs


def _bf16_round(x: np.ndarray) -> np.ndarray:
    return (np.ascontiguousarray(x, np.float32).view(np.uint32) & 0xFFFF0000).view(np.float32)


def _save_bf16(tensors: Mapping[str, np.ndarray], path: str) -> None:
    """A safetensors file of BF16 tensors (numpy has no bfloat16, so the safetensors package
    cannot write one from numpy): 8-byte header length, JSON header, data."""
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    blobs, at = [], 0
    for name, x in tensors.items():
        data = (np.ascontiguousarray(x, np.float32).view(np.uint32) >> 16).astype("<u2")
        raw = data.tobytes()
        header[name] = {"dtype": "BF16", "shape": list(x.shape),
                        "data_offsets": [at, at + len(raw)]}
        blobs.append(raw)
        at += len(raw)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little") + text + b"".join(blobs))


def peft_deltas(pairs: Mapping[str, PeftPair], scale: float,
                rslora: bool = False) -> dict[str, np.ndarray]:
    """Module -> PEFT's merged delta at ``scale``."""
    return {mod: p.delta(scale, rslora) for mod, p in pairs.items()}
