"""Make tests/data/real_model_golden.json: what the native build computes on the pinned real models.

    python -m tools.make_real_golden [--out PATH]

For SmolLM2 and Gemma 3 (``llamart models fetch`` them first) it records, with the model's
sha256: the token ids of a fixed set of texts, the top-k next-token logits after a few prompts
(as token ids, so tokenization is not part of that comparison) with the largest |logit| over the
whole vocabulary, the first greedy tokens after a prompt, and SmolLM2's rendered chat template
for tools/chat_conversations.py. tests/test_real_models.py compares every runtime (native, Pyodide
in Node and Chromium) against it. Run it again only when a pin (model or llama.cpp) changes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from llamart import Engine, pinned_models
from tools.chat_conversations import CONVERSATIONS

OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "real_model_golden.json"
TOP_K = 10
GREEDY_TOKENS = 10  # greedy text drifts between AVX2 and SIMD128 kernels: see docs/platforms.md
SYSTEM = {"role": "system", "content": "You are a helpful assistant."}

# texts tokenized with add_special=False, parse_special=False (ChatML markers stay literal text)
TEXTS = [
    "Hello world",
    "The capital of France is Paris.",
    "Ünïcödé and emoji 🦙🚀 ok? 日本語 👩‍👩‍👧",
    "  leading spaces\n\ttabs and 12345 digits 3.14159",
    "<|im_start|>user\nhi<|im_end|>",
    "",
]
# prompts with a clear next token (top-1 ahead by > 1 logit on both models, except Gemma on the
# first), where WebAssembly's Q4 kernels give the same top-1 as native ones
PLAIN_PROMPTS = ["The capital of France is", "1, 2, 3, 4, 5,", "The opposite of hot is",
                 "The quick brown fox jumps over the lazy"]
GREEDY_PROMPT = PLAIN_PROMPTS[-1]  # greedy text the same on both for 50+ characters
CHAT_QUESTION = "What is the capital of France?"


def _top(logits: np.ndarray) -> dict[str, object]:
    order = np.argsort(-logits, kind="stable")[:TOP_K]
    return {"top": [[int(i), float(logits[i])] for i in order],
            "margin": float(logits[order[0]] - logits[order[1]]),
            "max_abs": float(np.abs(logits).max())}


def model_golden(name: str, path: Path) -> dict[str, object]:
    """The golden record of one model (loaded natively, one thread)."""
    pin = pinned_models.PINS[name]
    eng = Engine("native")
    try:
        eng.load_model(path, n_ctx=512, n_threads=1)
        out: dict[str, object] = {"file": pin.filename, "sha256": pin.sha256}
        out["texts"] = [{"text": t, "ids": eng.tokenize(t, add_special=False)} for t in TEXTS]
        prompts = [eng.tokenize(p) for p in PLAIN_PROMPTS]
        if name == "smollm2":
            rendered = eng.apply_chat_template([SYSTEM, {"role": "user",
                                                        "content": CHAT_QUESTION}])
            prompts.append(eng.tokenize(rendered, add_special=False, parse_special=True))
            out["chat_template"] = {
                key: [eng.apply_chat_template(conv, add_generation_prompt=agp)
                      for agp in (True, False)]
                for key, conv in CONVERSATIONS.items()}
        out["logits"] = [{"tokens": toks, **_top(np.asarray(eng.logits(toks)))}
                         for toks in prompts]
        greedy_prompt = eng.tokenize(GREEDY_PROMPT)
        gen = eng.generate(greedy_prompt, GREEDY_TOKENS, temperature=0, repeat_penalty=1.0)
        pieces = list(gen)
        out["greedy"] = {"tokens": greedy_prompt, "text": "".join(pieces),
                         "n_tokens": gen.usage["completion_tokens"]}
        return out
    finally:
        eng.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.make_real_golden",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    models = {}
    for name in ("smollm2", "gemma3-270m"):
        path = pinned_models.cached_path(name)
        if path is None:
            print(f"make_real_golden: {name} is not fetched: run `python -m llamart models fetch "
                  f"{name}`", file=sys.stderr)
            return 2
        models[name] = model_golden(name, path)
    doc = {"made_by": "python -m tools.make_real_golden (native backend, 1 thread)",
           "top_k": TOP_K, "models": models}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
