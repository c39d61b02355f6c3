"""The wllama comparison's prompts, as text: ``python -m bench.wllama_prompt JOB_JSON`` (a child
process, with native llamart) prints one JSON line.

wllama 3.13.0 takes prompts only as text (its completion route rejects token ids), so the
comparison gives both systems the same prompt this way: seeded random words, each one token in
the model's vocabulary, until llama.cpp's tokenizer (here llamart's, with the special tokens the
model adds, as llama-server tokenizes) makes exactly ``n_prompt`` tokens of it. llamart gets
those ids, wllama the text; the page checks wllama evaluated ``n_prompt`` tokens. The tg prompt
is the shortest one-token text ("" when the model adds a BOS: then it is the BOS).
"""

from __future__ import annotations

import json
import logging
import random
import re
import sys
from typing import Any

WORD = re.compile(r"^ [a-z]{3,10}$")


def prompts(job: dict[str, Any]) -> dict[str, Any]:
    from llamart import Engine

    engine = Engine("native")
    try:
        engine.load_model(job["model"], n_ctx=job["n_ctx"], n_threads=1)
        tok = lambda text: engine.tokenize(text, add_special=True, parse_special=True)  # noqa: E731
        n_vocab = engine.model_info.n_vocab
        words = [p for p in (engine.detokenize([i]) for i in range(300, n_vocab))
                 if WORD.match(p) and len(tok(p)) == len(tok("")) + 1]
        rng = random.Random(1234)
        n = job["n_prompt"]
        text = ""
        for _ in range(20 * n):
            if len(tok(text)) == n:
                break
            word = rng.choice(words)
            if len(tok(text + word)) <= n:
                text += word
        ids = tok(text)
        if len(ids) != n:
            raise RuntimeError(f"could not build a {n}-token text prompt (got {len(ids)})")
        tg_text = next(t for t in ("", *words) if len(tok(t)) == 1)
        return {"text": text, "ids": ids, "tg_text": tg_text, "tg_ids": tok(tg_text)}
    finally:
        engine.dispose()


def main() -> None:
    logging.getLogger("llamart").setLevel(logging.ERROR)
    print("BENCH-RESULT " + json.dumps(prompts(json.loads(sys.argv[1]))), flush=True)


if __name__ == "__main__":
    main()
