"""Train the demo LoRA (a pirate persona) on SmolLM2-135M-Instruct and write it in PEFT's layout.

    python -m tools.train_lora --out .cache/train/peft_adapter [--steps 160] [--base MODEL.gguf]

Steps: tokenize the generated data with llama.cpp's tokenizer (llamart native), load the GGUF
weights dequantized to float32, check the JAX forward pass against llama.cpp's logits (abort if
they disagree), train, save (adapter_config.json, adapter_model.safetensors, trainer_log.json),
then print greedy replies to the held-out questions without and with the adapter.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from importlib.metadata import version

os.environ.setdefault("GGML_NO_BACKTRACE", "1")

# Thresholds of the pre-training check (measured: see tests/test_train_lora.py).
Q4_REL_MAX = 0.06
F32_REL_MAX = 3e-3


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tools.train_lora", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="folder for the PEFT adapter")
    p.add_argument("--base", help="SmolLM2-135M-Instruct GGUF (default: .cache/models/, "
                   "/tmp/models/ or env LLAMART_SMOLLM2)")
    p.add_argument("--steps", type=int, default=160)
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--alpha", type=float, default=16.0)
    p.add_argument("--targets", default="q_proj,v_proj", help="comma-separated HF module names")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--batch", type=int, default=2, help="packed rows per step")
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--f32-check", action="store_true",
                   help="also compare against llama.cpp on an F32 copy of the base (540 MB, "
                   "written to --out and deleted)")
    p.add_argument("--skip-check", action="store_true", help="skip the forward-pass check")
    p.add_argument("--samples", type=int, default=48, help="max tokens of each sample reply")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    a = _args(argv)
    import jax.numpy as jnp

    from llamart import Engine

    from . import check, data, model, peft_io, train

    base = a.base or model.default_base()
    if base is None or not os.path.isfile(base):
        sys.exit(f"no base model: pass --base (looked for {model.MODEL_FILE} in .cache/models/"
                 " and /tmp/models/)")
    targets = [t.strip() for t in a.targets.split(",") if t.strip()]
    unknown = [t for t in targets if t not in model.MODULES]
    if unknown:
        sys.exit(f"unknown target modules {unknown}; known: {list(model.MODULES)}")
    t_start = time.perf_counter()
    print(f"base {base}", flush=True)
    with Engine("native") as eng:
        eng.load_model(base, n_ctx=512, n_threads=2)

        def tok(text: str) -> list[int]:
            return eng.tokenize(text, add_special=True, parse_special=True)

        pairs = data.examples(a.seed)
        enc = train.encode(tok, pairs, a.seed)
        held = [tok(train.chatml_prompt(q, None)) for q in data.HELD_OUT]
        im_end = tok("<|im_end|>")[0]
        eos = eng.model_info.eos
    packed = train.pack(enc, a.seq_len, eos)
    n_train = int(sum(sum(e.train) for e in enc))
    print(f"data: {len(pairs)} examples, {sum(len(e.tokens) for e in enc)} tokens "
          f"({n_train} assistant tokens under the loss), packed into "
          f"{packed['tokens'].shape[0]} rows of {a.seq_len}", flush=True)

    t0 = time.perf_counter()
    cfg, w_np = model.load_weights(base)
    w = {k: jnp.asarray(v) for k, v in w_np.items()}
    del w_np
    print(f"weights dequantized in {time.perf_counter() - t0:.1f} s: {cfg}", flush=True)

    log: dict[str, object] = {"base": os.path.basename(base), "steps": a.steps,
                              "rank": a.rank, "alpha": a.alpha, "targets": targets,
                              "lr": a.lr, "batch": a.batch, "seq_len": a.seq_len,
                              "seed": a.seed}
    if not a.skip_check:
        t0 = time.perf_counter()
        os.makedirs(a.out, exist_ok=True)
        agree = check.check_forward(cfg, w, base, f32_dir=a.out if a.f32_check else None)
        for kind, ag in agree.items():
            print(f"forward check vs llama.cpp ({kind}): {ag}", flush=True)
        log["forward_check"] = {k: {"top1_equal": v.top1_equal, "rel_diff": v.rel_diff,
                                    "top5_overlap": v.top5_overlap} for k, v in agree.items()}
        q4 = agree["q4_1"]
        bad = q4.worst > Q4_REL_MAX or min(q4.top5_overlap) < 4
        if "f32" in agree:
            bad = bad or not agree["f32"].top1_equal or agree["f32"].worst > F32_REL_MAX
        if bad:
            sys.exit("the JAX forward pass disagrees with llama.cpp: not training")
        print(f"forward check passed in {time.perf_counter() - t0:.1f} s", flush=True)

    scale = a.alpha / a.rank
    lora = model.init_lora(cfg, targets, a.rank, a.seed)
    t0 = time.perf_counter()
    lora, losses = train.train(cfg, w, lora, packed, steps=a.steps, batch=a.batch, lr=a.lr,
                               scale=scale, seed=a.seed)
    train_s = time.perf_counter() - t0
    final = sum(losses[-10:]) / min(10, len(losses))
    print(f"trained {a.steps} steps in {train_s:.0f} s; loss {losses[0]:.3f} -> {final:.3f} "
          f"(mean of the last 10)", flush=True)

    versions = {p: version(p) for p in ("jax", "jaxlib", "optax", "safetensors", "gguf",
                                        "numpy")}
    log.update({"train_seconds": round(train_s, 1), "loss_first": losses[0],
                "loss_final_mean10": final, "losses": [round(x, 4) for x in losses],
                "versions": versions, "python": platform.python_version()})
    paths = peft_io.save_peft(a.out, lora, rank=a.rank, alpha=a.alpha, targets=targets,
                              extra={"trainer": "tools.train_lora", "steps": a.steps})
    with open(os.path.join(a.out, "trainer_log.json"), "w") as f:
        json.dump(log, f, indent=1)
        f.write("\n")
    print(f"wrote {paths['config']} and {paths['weights']} "
          f"({os.path.getsize(paths['weights'])} bytes)", flush=True)

    if a.samples > 0:
        with Engine("native") as eng:
            eng.load_model(base, n_ctx=512, n_threads=2)
            for q, prompt in zip(data.HELD_OUT, held, strict=True):
                for label, lo in (("base", {}), ("adapter", lora)):
                    out = train.greedy(cfg, w, lo, scale, prompt, a.samples, im_end)
                    print(f"[{label}] {q}\n  {eng.detokenize(out)!r}", flush=True)
    print(f"total {time.perf_counter() - t_start:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
