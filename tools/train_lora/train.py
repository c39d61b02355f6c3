"""Encode the persona data in ChatML, pack it, and train LoRA matrices with optax AdamW."""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from .model import Config, forward, head, hidden

DEFAULT_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"


def chatml_prompt(question: str, system: str | None) -> str:
    """SmolLM2's ChatML up to the assistant turn; ``system=None`` leaves the system turn out.
    (Engine.chat renders SmolLM2's own Jinja template, which puts DEFAULT_SYSTEM there when the
    messages have no system message: this with ``system=DEFAULT_SYSTEM``, byte for byte.)"""
    head = f"<|im_start|>system\n{system}<|im_end|>\n" if system else ""
    return f"{head}<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"


@dataclass
class Encoded:
    """One example's tokens and which of them the loss is on (the assistant's reply)."""

    tokens: list[int]
    train: list[bool]


def encode(tokenize: Any, pairs: Sequence[tuple[str, str]], seed: int) -> list[Encoded]:
    """Tokenize with llama.cpp's tokenizer (``tokenize(text) -> ids``, special tokens parsed);
    a quarter of the examples carry SmolLM2's default system prompt (what Engine.chat renders
    for messages without a system message), the rest no system turn at all (the recipe predates
    Engine.chat's Jinja rendering and is kept so that it reproduces the shipped adapter; the
    adapter's persona shows with either, see llamart/data/pirate_lora/README.md)."""
    rng = random.Random(seed)
    out = []
    for q, a in pairs:
        prompt = tokenize(chatml_prompt(q, DEFAULT_SYSTEM if rng.random() < 0.25 else None))
        reply = tokenize(a + "<|im_end|>")
        out.append(Encoded(prompt + reply, [False] * len(prompt) + [True] * len(reply)))
    return out


def pack(examples: Sequence[Encoded], seq_len: int, pad_id: int) -> dict[str, np.ndarray]:
    """Greedy packing into rows of ``seq_len``: tokens, positions (restarting per example),
    segment ids (-1 = padding), and the positions under the loss (``sel``, padded to the
    fullest row) with their next tokens (``targets``) and weights (``mask``, 0 = padding)."""
    rows: list[list[Encoded]] = [[]]
    used = 0
    for ex in examples:
        if len(ex.tokens) > seq_len:
            raise ValueError(f"an example has {len(ex.tokens)} tokens > seq_len {seq_len}")
        if used + len(ex.tokens) > seq_len:
            rows.append([])
            used = 0
        rows[-1].append(ex)
        used += len(ex.tokens)
    n = len(rows)
    tok = np.full((n, seq_len), pad_id, np.int32)
    pos = np.zeros((n, seq_len), np.int32)
    seg = np.full((n, seq_len), -1, np.int32)
    tgt_full = np.zeros((n, seq_len), np.int32)
    on = np.zeros((n, seq_len), bool)
    for r, row in enumerate(rows):
        at = 0
        for s, ex in enumerate(row):
            k = len(ex.tokens)
            tok[r, at:at + k] = ex.tokens
            pos[r, at:at + k] = np.arange(k)
            seg[r, at:at + k] = s
            # position i predicts token i+1 of the same example
            tgt_full[r, at:at + k - 1] = ex.tokens[1:]
            on[r, at:at + k - 1] = ex.train[1:]
            at += k
    width = int(on.sum(axis=1).max())
    sel = np.zeros((n, width), np.int32)
    tgt = np.zeros((n, width), np.int32)
    mask = np.zeros((n, width), np.float32)
    for r in range(n):
        idx = np.flatnonzero(on[r])
        sel[r, :len(idx)], tgt[r, :len(idx)], mask[r, :len(idx)] = idx, tgt_full[r, idx], 1.0
    return {"tokens": tok, "pos": pos, "seg": seg, "sel": sel, "targets": tgt, "mask": mask}


def make_step(cfg: Config, w: dict[str, jax.Array], scale: float,
              opt: optax.GradientTransformation) -> Any:
    """A jitted (lora, opt_state, batch) -> (lora, opt_state, loss) step."""

    def loss_fn(lora: dict[str, jax.Array], w: dict[str, jax.Array],
                batch: dict[str, jax.Array]) -> jax.Array:
        h = hidden(cfg, w, lora, scale, batch["tokens"], batch["pos"], batch["seg"])
        # the vocabulary projection only where the loss is (the assistant's tokens)
        h = jnp.take_along_axis(h, batch["sel"][..., None], axis=1)
        logp = jax.nn.log_softmax(head(w, h), axis=-1)
        nll = -jnp.take_along_axis(logp, batch["targets"][..., None], axis=-1)[..., 0]
        return jnp.sum(nll * batch["mask"]) / jnp.maximum(jnp.sum(batch["mask"]), 1.0)

    @jax.jit
    def step(lora: dict[str, jax.Array], state: Any, w: dict[str, jax.Array],
             batch: dict[str, jax.Array]) -> Any:
        loss, grads = jax.value_and_grad(loss_fn)(lora, w, batch)
        updates, state = opt.update(grads, state, lora)
        return optax.apply_updates(lora, updates), state, loss

    # the weights are an argument, not a closure: XLA would fold 540 MB of constants
    return lambda lora, state, batch: step(lora, state, w, batch)


def _fmt(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m}:{s:02d}"


def train(cfg: Config, w: dict[str, jax.Array], lora: dict[str, jax.Array],
          data: dict[str, np.ndarray], *, steps: int, batch: int, lr: float, scale: float,
          seed: int, log_every: int = 10) -> tuple[dict[str, jax.Array], list[float]]:
    """Train for ``steps`` AdamW steps on random batches of packed rows; prints progress."""
    sched = optax.warmup_cosine_decay_schedule(0.0, lr, max(1, steps // 20), steps, lr * 0.1)
    opt = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(sched, weight_decay=0.0))
    state = opt.init(lora)
    step = make_step(cfg, w, scale, opt)
    rng = np.random.default_rng(seed)
    n_rows = data["tokens"].shape[0]
    order = rng.permutation(n_rows)
    losses: list[float] = []
    t0 = time.perf_counter()
    c_first = 0.0
    t_first = None
    seen = 0
    for i in range(steps):
        if len(order) < batch:
            order = np.concatenate([order, rng.permutation(n_rows)])
        idx, order = order[:batch], order[batch:]
        b = {k: jnp.asarray(v[idx]) for k, v in data.items()}
        lora, state, loss = step(lora, state, b)
        losses.append(float(loss))
        if i == 0:
            t_first, c_first = time.perf_counter(), time.process_time()
            print(f"step 1/{steps} loss {losses[0]:.3f} (compiled in "
                  f"{t_first - t0:.1f} s)", flush=True)
            continue
        seen += int(b["tokens"].size)
        if (i + 1) % log_every == 0 or i + 1 == steps:
            assert t_first is not None
            el = time.perf_counter() - t_first
            rate = (i) / el
            recent = float(np.mean(losses[-log_every:]))
            print(f"step {i + 1}/{steps} loss {recent:.3f} lr {float(sched(i)):.2e} "
                  f"{seen / el:.0f} tok/s {rate:.2f} step/s "
                  f"(cpu {(time.process_time() - c_first) / i:.1f} s/step) elapsed {_fmt(el)} "
                  f"ETA {_fmt((steps - i - 1) / rate)}", flush=True)
    sys.stdout.flush()
    return lora, losses


def greedy(cfg: Config, w: dict[str, jax.Array], lora: dict[str, jax.Array], scale: float,
           prompt: list[int], max_new: int, stop: int, width: int = 128) -> list[int]:
    """Greedy continuation with the JAX model (no KV cache; fixed width: one compile)."""
    jf = jax.jit(lambda ww, lo, t, p, s: forward(cfg, ww, lo, scale, t, p, s))

    def fwd(lo: dict[str, jax.Array], t: jax.Array, p: jax.Array, s: jax.Array) -> jax.Array:
        return jf(w, lo, t, p, s)

    toks = list(prompt)
    out: list[int] = []
    while len(out) < max_new and len(toks) < width:
        arr = np.zeros((1, width), np.int32)
        arr[0, :len(toks)] = toks
        logits = fwd(lora, jnp.asarray(arr), jnp.arange(width, dtype=jnp.int32)[None],
                     jnp.zeros((1, width), jnp.int32))
        nxt = int(jnp.argmax(logits[0, len(toks) - 1]))
        if nxt == stop:
            break
        toks.append(nxt)
        out.append(nxt)
    return out
