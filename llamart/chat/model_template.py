"""The chat template of a loaded model: its own Jinja ``tokenizer.chat_template`` (or an
override), with its BOS/EOS token texts, rendered by :mod:`llamart.chat.template`."""

from __future__ import annotations

import os
from typing import Any

from ..errors import ChatTemplateError

TEMPLATE_KEY = "tokenizer.chat_template"


def _token_text(header: Any, key: str) -> str:
    tokens = header.value("tokenizer.ggml.tokens")
    token_id = header.value(key)
    if tokens is None or not isinstance(token_id, int) or not 0 <= token_id < len(tokens):
        return ""
    text = tokens[token_id]
    return text if isinstance(text, str) else ""


def bos_text(header: Any) -> str:
    """The text of the model's BOS token ("" if it has none)."""
    return _token_text(header, "tokenizer.ggml.bos_token_id")


def model_chat_template(header: Any, path: str, override: str | None) -> Any:
    """The :class:`~llamart.chat.template.ChatTemplate` for a model (``override`` first).

    A model without a template and no override is a ChatTemplateError naming the model.
    """
    from .template import ChatTemplate  # jinja2 is imported only when a chat needs it

    name = os.path.basename(path)
    source = override if override is not None else header.value(TEMPLATE_KEY)
    if not isinstance(source, str) or not source:
        raise ChatTemplateError(
            f"{name} has no chat template ('{TEMPLATE_KEY}' is missing, as in base models): "
            f"pass chat_template= (a Jinja string) to load_model(), chat() or "
            f"apply_chat_template()", template=name,
            reason="the model has no chat template")
    return ChatTemplate(source, bos_token=bos_text(header),
                        eos_token=_token_text(header, "tokenizer.ggml.eos_token_id"), name=name)
