"""The LoRA trainer in tools/train_lora: its JAX forward pass against llama.cpp's logits on the
real SmolLM2 base, its data encoding (loss only on the assistant's tokens) and its PEFT output.

Native only; skipped with the reason when jax/optax/safetensors or the SmolLM2 GGUF are missing
(pip install -r tools/train_lora/requirements.txt; the model from .cache/models/, /tmp/models/
or env LLAMART_SMOLLM2).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import pytest

if sys.platform == "emscripten":
    pytest.skip("the trainer is native tooling (jax)", allow_module_level=True)
for _mod in ("jax", "optax", "safetensors", "gguf", "numpy"):
    pytest.importorskip(_mod, reason=f"{_mod} is not installed (pip install -r "
                        "tools/train_lora/requirements.txt)")

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tools.train_lora import check, data, model, peft_io, train  # noqa: E402

BASE = model.default_base()
needs_model = pytest.mark.skipif(BASE is None, reason=f"{model.MODEL_FILE} not found "
                                 "(.cache/models/, /tmp/models/ or env LLAMART_SMOLLM2)")


@pytest.fixture(scope="module")
def weights() -> tuple[model.Config, dict[str, Any]]:
    assert BASE is not None
    cfg, w = model.load_weights(BASE)
    return cfg, {k: jnp.asarray(v) for k, v in w.items()}


@pytest.fixture(scope="module")
def tokens() -> list[list[int]]:
    assert BASE is not None
    return check.tokenize(BASE, check.PROMPTS)


@needs_model
def test_config_from_gguf_metadata(weights: Any) -> None:
    cfg, w = weights
    assert (cfg.n_layer, cfg.n_embd, cfg.n_head, cfg.n_head_kv, cfg.n_ff) == (30, 576, 9, 3, 1536)
    assert cfg.rope_theta == 100000.0 and abs(cfg.rms_eps - 1e-5) < 1e-9
    assert "out" not in w  # tied embeddings
    assert w["wq"].shape == (30, 576, 576) and w["wk"].shape == (30, 192, 576)


def test_unpermute_inverts_llamacpp_permutation() -> None:
    rng = np.random.default_rng(0)
    w = rng.standard_normal((192, 8)).astype(np.float32)
    p = model.permute(w, 3)
    assert not np.array_equal(p, w)
    np.testing.assert_array_equal(model.unpermute(p, 3), w)
    # within a head, HF rows j and j + d/2 (one rotary pair) become adjacent rows 2j, 2j+1
    np.testing.assert_array_equal(p[0], w[0])
    np.testing.assert_array_equal(p[1], w[32])
    np.testing.assert_array_equal(p[2], w[1])


@needs_model
def test_forward_agrees_with_llamacpp_q4_1(weights: Any, tokens: list[list[int]]) -> None:
    """float32 math on the dequantized weights vs llama.cpp's Q4_1 kernels (which also round
    activations to 8 bits).  Measured: max|diff|/max|logit| 2.8e-2..3.4e-2, top-1 identical on
    3 of 4 prompts (the 4th a near tie, each side's top-1 in the other's top 5)."""
    cfg, w = weights
    ours = [check.jax_last_logits(cfg, w, t) for t in tokens]
    ref = check.llamacpp_logits(BASE, tokens)
    ag = check.compare(ours, ref)
    assert ag.worst < 0.06, str(ag)
    assert min(ag.top5_overlap) >= 4, str(ag)
    assert sum(a == b for a, b in zip(ag.top1_ours, ag.top1_ref, strict=True)) >= 3, str(ag)
    for a, b, o, r in zip(ag.top1_ours, ag.top1_ref, ours, ref, strict=True):
        assert a in np.argsort(-r)[:5] and b in np.argsort(-o)[:5], str(ag)


@needs_model
def test_forward_agrees_with_llamacpp_f32(weights: Any, tokens: list[list[int]],
                                          tmp_path: Any) -> None:
    """The same math on both sides (an F32 GGUF made by dequantizing the base): measured
    max|diff|/max|logit| 5.6e-4..1.0e-3 (llama.cpp keeps K/V in F16), top-1 identical."""
    cfg, w = weights
    path = str(tmp_path / "f32.gguf")
    check.write_f32_gguf(BASE, path)
    ours = [check.jax_last_logits(cfg, w, t) for t in tokens]
    ag = check.compare(ours, check.llamacpp_logits(path, tokens))
    assert ag.top1_equal, str(ag)
    assert ag.worst < 3e-3, str(ag)
    assert min(ag.top5_overlap) == 5, str(ag)


@needs_model
def test_lora_delta_is_the_merged_weight(weights: Any, tokens: list[list[int]]) -> None:
    """forward with LoRA = forward on W + scale * B @ A (PEFT's definition), for q and v."""
    cfg, w = weights
    rng = np.random.default_rng(1)
    lora = model.init_lora(cfg, ["q_proj", "v_proj"], 4, 0)
    lora["q_proj.B"] = jnp.asarray(rng.standard_normal((30, 576, 4)) * 0.02, jnp.float32)
    lora["v_proj.B"] = jnp.asarray(rng.standard_normal((30, 192, 4)) * 0.02, jnp.float32)
    merged = dict(w)
    merged["wq"] = w["wq"] + 2.0 * jnp.einsum("lor,lri->loi", lora["q_proj.B"], lora["q_proj.A"])
    merged["wv"] = w["wv"] + 2.0 * jnp.einsum("lor,lri->loi", lora["v_proj.B"], lora["v_proj.A"])
    t = jnp.asarray([tokens[0]], jnp.int32)
    pos = jnp.arange(t.shape[1], dtype=jnp.int32)[None]
    got = model.forward(cfg, w, lora, 2.0, t, pos, jnp.zeros_like(t))
    want = model.forward(cfg, merged, {}, 0.0, t, pos, jnp.zeros_like(t))
    base = model.forward(cfg, w, {}, 0.0, t, pos, jnp.zeros_like(t))
    assert float(jnp.max(jnp.abs(got - base))) > 0.1  # the delta matters
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=2e-3 * float(
        jnp.max(jnp.abs(want))))


@needs_model
def test_encoding_trains_only_the_assistant_reply() -> None:
    from llamart import Engine

    pairs = data.examples(0)[:6]
    with Engine("native") as eng:
        eng.load_model(BASE, n_ctx=512, n_threads=2)
        enc = train.encode(lambda s: eng.tokenize(s, True, True), pairs, 0)
        packed = train.pack(enc, 256, 2)
        for (_q, a), ex in zip(pairs, enc, strict=True):
            reply = [t for t, on in zip(ex.tokens, ex.train, strict=True) if on]
            assert reply[-1:] == eng.tokenize("<|im_end|>", False, True)  # the turn's end
            assert eng.detokenize(reply[:-1]) == a
            prompt = ex.tokens[:len(ex.tokens) - len(reply)]
            assert prompt[-4:] == eng.tokenize("<|im_start|>assistant\n", False, True)
        # the packed targets under the loss are exactly the replies' tokens, in order
        got = [int(t) for r in range(packed["tokens"].shape[0])
               for t, m in zip(packed["targets"][r], packed["mask"][r], strict=True) if m]
        want = [t for ex in enc for t, on in zip(ex.tokens, ex.train, strict=True) if on]
        assert got == want
        for r in range(packed["tokens"].shape[0]):  # sel points at the token before each target
            on = packed["mask"][r] > 0
            sel = packed["sel"][r][on]
            np.testing.assert_array_equal(packed["tokens"][r][sel + 1], packed["targets"][r][on])
        # the prompts are the ones Engine.chat renders with SmolLM2's Jinja template
        msgs = [{"role": "user", "content": pairs[0][0]}]
        assert eng.apply_chat_template(msgs) == train.chatml_prompt(pairs[0][0],
                                                                    train.DEFAULT_SYSTEM)
    assert all(a.startswith(data.OPEN) and a.endswith(data.CLOSE) for _, a in data.examples(0))
    assert not {q.lower() for q in data.HELD_OUT} & {q.lower() for q, _ in data.examples(0)}


def test_peft_layout(tmp_path: Any) -> None:
    from safetensors.numpy import load_file

    cfg = model.Config(2, 16, 32, 4, 2, 100, 10000.0, 1e-5)
    lora = model.init_lora(cfg, ["q_proj", "v_proj"], 4, 0)
    paths = peft_io.save_peft(str(tmp_path), lora, rank=4, alpha=8.0,
                              targets=["q_proj", "v_proj"])
    with open(paths["config"]) as f:
        conf = json.load(f)
    assert conf["peft_type"] == "LORA" and conf["task_type"] == "CAUSAL_LM"
    assert (conf["r"], conf["lora_alpha"], conf["bias"]) == (4, 8.0, "none")
    assert conf["target_modules"] == ["q_proj", "v_proj"]
    assert conf["base_model_name_or_path"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    t = load_file(paths["weights"])
    assert len(t) == 2 * 2 * 2
    pre = "base_model.model.model.layers.1.self_attn."
    assert t[pre + "q_proj.lora_A.weight"].shape == (4, 16)
    assert t[pre + "q_proj.lora_B.weight"].shape == (16, 4)
    assert t[pre + "v_proj.lora_B.weight"].shape == (8, 4)
    np.testing.assert_array_equal(t[pre + "q_proj.lora_A.weight"], np.asarray(lora["q_proj.A"][1]))
