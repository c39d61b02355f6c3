"""Make tests/data/embedding_golden.json: the embeddings the native build computes.

    python -m tools.make_embed_golden [--out PATH]

Records, with each model file's sha256, the normalised vectors of ``TEXTS`` under every pooling
type for the F32 test fixture ``model_f32`` (``python -m llamart.testing.fixtures`` makes it
deterministically) and the mean-pooled ones for the pinned SmolLM2 (``llamart models fetch
smollm2`` first). tests/test_embeddings.py checks the native build still computes them and the
WebAssembly one (in Pyodide, no numpy) agrees within the tolerances stated there. Run it again
only when a pin (model, fixture recipe or llama.cpp) changes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path

from llamart import Engine, pinned_models
from llamart.testing.fixtures import build

OUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "embedding_golden.json"
TEXTS = ["The cat sat on the mat.", "A cat was sitting on the mat.",
         "Stock markets fell sharply after the interest rate decision."]
N_CTX = 256


def sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def vectors(path: str | Path, poolings: tuple[str, ...]) -> dict[str, list[list[float]]]:
    eng = Engine("native")
    try:
        eng.load_model(path, n_ctx=N_CTX, n_threads=1)
        return {p: [[float(f"{x:.8g}") for x in v] for v in eng.embed(TEXTS, pooling=p)]
                for p in poolings}
    finally:
        eng.dispose()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    smol = pinned_models.cached_path("smollm2")
    if smol is None:
        print("smollm2 is not in the model cache: python -m llamart models fetch smollm2",
              file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        fixture = build(tmp)["model_f32"]
        golden = {
            "texts": TEXTS,
            "n_ctx": N_CTX,
            "models": {
                "model_f32": {"sha256": sha256(fixture),
                              "vectors": vectors(fixture, ("mean", "cls", "last"))},
                "smollm2": {"sha256": sha256(smol), "vectors": vectors(smol, ("mean",))},
            },
        }
    args.out.write_text(json.dumps(golden, indent=None, separators=(",", ":")) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
