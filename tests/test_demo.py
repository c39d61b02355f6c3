"""``llamart demo`` (llamart/demo.py) end to end on the real SmolLM2 with the shipped adapter.

Native only (the demo converts the adapter with numpy/safetensors/gguf and applies it); skips
when SmolLM2 is not in the model cache. Small settings keep it short: few tokens, few scales,
one thread (two threads slow down many times on a busy machine).
The model cache is a temporary folder linking the cached model, so the demo's converted
adapter is written there, not into the shared cache.
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

if sys.platform == "emscripten":
    pytest.skip("the demo converts and applies a LoRA: native only", allow_module_level=True)

from llamart import demo  # noqa: E402
from tools.train_lora.data import CLOSE, OPEN  # noqa: E402


@pytest.fixture
def model_dir(tmp_path: Path, real_model: Callable[[str], str], monkeypatch) -> Path:
    """A model cache holding links to the verified SmolLM2 and its verification stamp."""
    model = Path(real_model("smollm2"))
    for src in model.parent.glob(model.name + "*"):  # the GGUF and its .verified.json
        (tmp_path / src.name).symlink_to(src)
    monkeypatch.setenv("LLAMART_MODEL_DIR", str(tmp_path))
    return tmp_path


def test_demo_runs_base_adapter_and_base_again(model_dir: Path, monkeypatch) -> None:
    replies: list[tuple[str, dict[str, float], str]] = []
    original = demo.stream_reply

    def recording(engine: Any, question: str, max_tokens: int, out: Any) -> str:
        reply = original(engine, question, max_tokens, out)
        replies.append((question, dict(engine.loras), reply))
        return reply

    monkeypatch.setattr(demo, "stream_reply", recording)
    out = io.StringIO()
    assert demo.run(backend="native", max_tokens=16, scales=(0.75,), compare_scales=(0, 1),
                    compare_max_tokens=4, n_threads=1, out=out) == 0
    text = out.getvalue()
    assert os.path.isfile(model_dir / "demo-pirate-lora.gguf")  # converted into this cache

    n = len(demo.QUESTIONS)
    assert [q for q, _, _ in replies[:n]] == list(demo.QUESTIONS)
    assert not any(loras for _, loras, _ in replies[:n])
    base = {q: r for q, _, r in replies[:n]}
    assert "Paris" in base["What is the capital of France?"]
    adapted = [(q, loras, r) for q, loras, r in replies if loras]
    assert adapted and all(list(loras.values()) == [0.75] for _, loras, _ in adapted)
    for q, _, r in adapted:
        assert r != base[q]
        assert OPEN in r or CLOSE in r  # the persona it was trained on
        assert OPEN not in base[q] and CLOSE not in base[q]
    again = replies[-1]
    assert not again[1] and again[2] == base[again[0]]
    assert "identical to the first base reply: yes" in text
    assert "drift and scale" in text and "recommended" in text
    assert "reference text" in text and "base perplexity" in text  # over-steering by perplexity


def test_golden_prompts_are_held_out() -> None:
    """The golden prompts (and so the demo's adapter question) are none of the training
    questions and start with none of their templates' first two words."""
    from llamart.lora.prompts import load_prompts
    from tools.train_lora.data import examples

    trained = [q.lower() for q, _ in examples()]
    starts = {" ".join(q.split()[:2]) for q in trained}
    golden = [p.messages[-1]["content"].lower() for p in load_prompts(demo.GOLDEN)
              if p.messages is not None]
    assert len(golden) >= 5 and demo.QUESTIONS[1].lower() == golden[0]
    for q in golden:
        assert q not in trained and " ".join(q.split()[:2]) not in starts, q
