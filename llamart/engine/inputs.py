"""The Engine's text inputs: checks of its call arguments (paths, token lists, chat messages)
and the way text becomes tokens and tokens text.

TypeError for a wrong type, ValueError for a bad value, each naming the argument. Functions
given a ``guard`` (the engine's lock and loaded-model check, a context manager yielding the
:class:`~llamart.engine.model_state.LoadedModel`) check their arguments first, then enter it.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from ..chat.model_template import bos_text, model_chat_template
from ..errors import ContextOverflowError, backend_errors
from ..params import check_bool, check_template

if TYPE_CHECKING:
    from ..bindings.base import Backend
    from .model_state import LoadedModel

__all__ = ["chat_prompt", "check_messages", "check_tokens", "detokenize", "fspath",
           "is_token_seq", "model_prompt_tokens", "prompt_tokens", "tokenize",
           "tokenize_checked"]


def fspath(name: str, value: Any) -> str:
    """A str or os.PathLike as str (bytes paths refused)."""
    if isinstance(value, str):
        return value
    if isinstance(value, os.PathLike):
        p = os.fspath(value)
        if isinstance(p, str):
            return p
    raise TypeError(f"{name} must be a str or os.PathLike, not {type(value).__name__}")


def is_token_seq(value: Any) -> bool:
    return (not isinstance(value, (str, bytes, bytearray, Mapping))
            and hasattr(value, "__iter__") and hasattr(value, "__len__"))


def check_tokens(tokens: Any, n_vocab: int) -> list[int]:
    """A sequence of token ids inside the vocabulary, as a list of int."""
    if not is_token_seq(tokens):
        raise TypeError(f"tokens must be a sequence of int, not {type(tokens).__name__}")
    out = []
    for i, t in enumerate(tokens):
        if isinstance(t, bool) or not isinstance(t, numbers.Integral):
            raise TypeError(f"tokens[{i}] must be an int, not {type(t).__name__}")
        if not 0 <= t < n_vocab:
            raise ValueError(f"tokens[{i}] = {t} is outside the vocabulary (0..{n_vocab - 1})")
        out.append(int(t))
    return out


def check_messages(messages: Any) -> list[Mapping[str, Any]]:
    """Chat messages as transformers' ``apply_chat_template`` takes them: dicts with a
    non-empty str ``role`` and a ``content`` that is a str, None (an assistant turn carrying
    ``tool_calls``) or a list of parts (``[{"type": "text", "text": ...}]``); other keys
    (``tool_calls``, ``name``, ``tool_call_id``, ...) reach the template as they are."""
    if isinstance(messages, (str, bytes, Mapping)) or not isinstance(messages, Sequence):
        raise TypeError(f"messages must be a list of {{'role': ..., 'content': ...}} dicts, "
                        f"not {type(messages).__name__}")
    if not messages:
        raise ValueError("messages is empty")
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping):
            raise TypeError(f"messages[{i}] must be a dict, not {type(m).__name__}")
        for key in ("role", "content"):
            if key not in m:
                raise ValueError(f"messages[{i}] has no '{key}'")
        if not isinstance(m["role"], str):
            raise TypeError(f"messages[{i}]['role'] must be a str, "
                            f"not {type(m['role']).__name__}")
        if not m["role"]:
            raise ValueError(f"messages[{i}]['role'] is empty")
        content = m["content"]
        if content is None or isinstance(content, str):
            continue
        if not isinstance(content, (list, tuple)):
            raise TypeError(f"messages[{i}]['content'] must be a str, None or a list of "
                            f"parts, not {type(content).__name__}")
        for j, part in enumerate(content):
            if not isinstance(part, Mapping):
                raise TypeError(f"messages[{i}]['content'][{j}] must be a dict "
                                f"({{'type': 'text', 'text': ...}}), not {type(part).__name__}")
    return list(messages)


def prompt_tokens(prompt: Any, tokenize: Callable[[str], list[int]], n_vocab: int, n_ctx: int,
                  *, room: bool) -> list[int]:
    """The tokens of a prompt (a str, through ``tokenize``, or token ids) that fit a context
    of ``n_ctx`` tokens (leaving ``room`` for one generated token): else ContextOverflowError."""
    if isinstance(prompt, str):
        if not prompt:
            raise ValueError("prompt is empty")
        tokens = tokenize(prompt)
    elif is_token_seq(prompt):
        tokens = check_tokens(prompt, n_vocab)
    else:
        raise TypeError(f"prompt must be a str, not {type(prompt).__name__}")
    if not tokens:
        raise ValueError("prompt is empty (no tokens)")
    if len(tokens) > n_ctx - (1 if room else 0):
        extra = " and leave room for one generated token" if room else ""
        raise ContextOverflowError(f"prompt is {len(tokens)} tokens; the context window "
                                   f"(n_ctx={n_ctx}) cannot hold it{extra}")
    return tokens


def tokenize(backend: Backend, text: str, add_special: bool, parse_special: bool) -> list[int]:
    """The backend's tokens for ``text`` (backend errors mapped)."""
    with backend_errors("text"):
        return list(backend.tokenize(text, add_special, parse_special))


def tokenize_checked(backend: Backend, text: Any, add_special: Any, parse_special: Any,
                     guard: AbstractContextManager[object]) -> list[int]:
    """``Engine.tokenize``: the arguments checked, then :func:`tokenize` inside ``guard``."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, not {type(text).__name__}")
    check_bool("add_special", add_special)
    check_bool("parse_special", parse_special)
    with guard:
        return tokenize(backend, text, add_special, parse_special)


def detokenize(backend: Backend, tokens: Any,
               guard: AbstractContextManager[LoadedModel]) -> str:
    """``Engine.detokenize``: the text of ``tokens`` (invalid UTF-8 becomes U+FFFD)."""
    with guard as model, backend_errors("text"):
        data = backend.detokenize(check_tokens(tokens, model.info.n_vocab))
        return bytes(data).decode("utf-8", errors="replace")


def model_prompt_tokens(backend: Backend, model: LoadedModel, prompt: Any, parse_special: bool,
                        *, room: bool, add_bos: bool | None = True) -> list[int]:
    """:func:`prompt_tokens` for the loaded ``model``. ``add_bos=None`` (a rendered chat):
    BOS unless the text starts with the model's BOS already (the template wrote it)."""
    def tokenize_prompt(text: str) -> list[int]:
        add = add_bos
        if add is None:
            bos = bos_text(model.header)
            add = not (bos and text.startswith(bos))
        return tokenize(backend, text, add, parse_special)

    return prompt_tokens(prompt, tokenize_prompt, model.info.n_vocab, model.info.n_ctx,
                         room=room)


def chat_prompt(messages: Any, add_generation_prompt: Any, chat_template: Any,
                template_kwargs: Mapping[str, Any],
                guard: AbstractContextManager[LoadedModel]) -> str:
    """``Engine.apply_chat_template``: the arguments checked, the template found inside
    ``guard`` (``chat_template``, else the one given at load, else the model's own) and
    rendered outside it."""
    messages = check_messages(messages)
    check_bool("add_generation_prompt", add_generation_prompt)
    override = check_template("chat_template", chat_template)
    with guard as model:
        template = model_chat_template(model.header, model.info.path,
                                       override or model.params.chat_template)
    return template.render(messages,
                           add_generation_prompt=add_generation_prompt, **template_kwargs)
