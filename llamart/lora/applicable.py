"""Adapters llama.cpp loads but llamart must not apply silently (checked before set_lora).

Pure Python: runs natively and in Pyodide, on a header from ``llamart.gguf``.
"""

from __future__ import annotations

from typing import Any

from ..errors import AdapterError

ALORA_KEY = "adapter.alora.invocation_tokens"


def check_applicable(header: Any) -> None:
    """Raise AdapterError if the adapter ``header`` (a ``GGUFHeader``) must not be applied.

    An activated LoRA (aLoRA, ``adapter.alora.invocation_tokens``) is meant to act only after
    its invocation tokens; ``set_lora`` would apply it from the first token, silently
    changing the base's behaviour everywhere, so it is refused.
    """
    tokens = header.kv.get(ALORA_KEY)
    if tokens is not None:
        n = len(tokens) if hasattr(tokens, "__len__") else "some"
        reason = (f"is an activated LoRA (aLoRA: '{ALORA_KEY}' holds {n} invocation "
                  "tokens); it must act only after those tokens, and llamart applies adapters "
                  "from the first token, so it refuses aLoRA adapters")
        raise AdapterError(f"{header.path}: {reason}", path=header.path, reason=reason)
