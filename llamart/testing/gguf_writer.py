"""Tiny GGUF files for tests, written with the standard library alone (no numpy, no ``gguf``
package: runs in Pyodide too).

:func:`write_model` writes a llama-architecture model with a Jinja chat template
(:data:`CHAT_TEMPLATE`) and four zero-filled F32 tensors; :func:`write_adapter` a LoRA adapter
for it (``lora_a``/``lora_b`` pairs). Both are valid GGUF v3, so the Engine's own checks
(:mod:`llamart.gguf`) run on them, and ``Engine(FakeBackend())`` loads them (the fake answers
for the weights). Tensor shapes are in ggml ``ne`` order. For models llama.cpp can run, see
:mod:`llamart.testing.models` (numpy and ``gguf``).
"""

from __future__ import annotations

import math
import struct

__all__ = ["BASE_TENSORS", "CHAT_TEMPLATE", "write_adapter", "write_gguf", "write_model"]

_U32, _F32, _STR = 4, 6, 8


def _gguf_str(s: str) -> bytes:
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def write_gguf(path: str, kv: dict[str, object], tensors: list[tuple[str, tuple[int, ...]]]) -> str:
    """Write a GGUF file: kv values are str (string), float (f32) or int (u32); tensor shapes
    in ggml ne order, F32 data filled with zeros."""
    out = bytearray(b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kv)))
    for k, v in kv.items():
        out += _gguf_str(k)
        if isinstance(v, str):
            out += struct.pack("<I", _STR) + _gguf_str(v)
        elif isinstance(v, float):
            out += struct.pack("<If", _F32, v)
        else:
            out += struct.pack("<II", _U32, v)
    offset = 0
    sizes = []
    for name, shape in tensors:
        n = 4 * math.prod(shape)
        out += _gguf_str(name) + struct.pack("<I", len(shape))
        out += b"".join(struct.pack("<Q", d) for d in shape)
        out += struct.pack("<IQ", 0, offset)
        sizes.append(n)
        offset += n + (-n % 32)
    out += b"\0" * (-len(out) % 32)
    for n in sizes:
        out += b"\0" * (n + (-n % 32))
    with open(path, "wb") as f:
        f.write(out)
    return path


# the model's tensors: names and shapes the adapters' checks compare against
BASE_TENSORS = [("token_embd.weight", (8, 16)), ("blk.0.attn_q.weight", (8, 8)),
                ("blk.0.attn_v.weight", (8, 8)), ("output.weight", (8, 16))]


# the models carry a Jinja chat template (rendered by the Engine, not the backend)
CHAT_TEMPLATE = ("{% for m in messages %}<s>{{ m.role }}: {{ m.content }}</s>{% endfor %}"
                 "{% if add_generation_prompt %}<s>assistant: {% endif %}")


def write_model(path: str, arch: str = "llama", template: str | None = CHAT_TEMPLATE) -> str:
    """A model file for ``arch`` with ``template`` as ``tokenizer.chat_template`` (None: none)."""
    kv: dict[str, object] = {"general.architecture": arch, "general.type": "model"}
    if template is not None:
        kv["tokenizer.chat_template"] = template
    return write_gguf(path, kv, BASE_TENSORS)


def write_adapter(path: str, *, rank: int = 2, alpha: float = 4.0, arch: str = "llama",
                  targets: tuple[str, ...] = ("attn_q", "attn_v"), n_in: int = 8,
                  task: str | None = None) -> str:
    """A LoRA adapter file: ``alpha``, an ``(n_in, rank)`` lora_a and ``(rank, 8)`` lora_b per
    target of block 0 (``n_in`` other than 8 makes one that does not fit the model)."""
    kv: dict[str, object] = {"general.architecture": arch, "general.type": "adapter",
                             "adapter.type": "lora", "adapter.lora.alpha": alpha}
    if task:
        kv["adapter.lora.task_name"] = task
    tensors = []
    for t in targets:
        tensors += [(f"blk.0.{t}.weight.lora_a", (n_in, rank)),
                    (f"blk.0.{t}.weight.lora_b", (rank, 8))]
    return write_gguf(path, kv, tensors)
