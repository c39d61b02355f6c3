"""The LoRA workflow: PEFT -> GGUF conversion (``convert``, needs numpy, safetensors, gguf: the
``lora`` extra), the applicability check run before ``set_lora`` (pure Python), and the drift
and scale comparison (``llamart.lora.compare``)."""

from __future__ import annotations

from typing import Any

from .applicable import check_applicable

__all__ = ["check_applicable", "convert"]


def __getattr__(name: str) -> Any:
    if name == "convert":  # imported on first use: numpy, safetensors and gguf are optional
        from .converter import convert

        return convert
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
