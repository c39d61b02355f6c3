"""Checks of the Engine's call arguments: paths, token lists and chat messages.

TypeError for a wrong type, ValueError for a bad value, each naming the argument.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .errors import ContextOverflowError

__all__ = ["check_messages", "check_tokens", "fspath", "is_token_seq", "prompt_tokens"]


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


def check_messages(messages: Any) -> list[tuple[str, str]]:
    """Chat messages ([{"role": ..., "content": ...}, ...]) as (role, content) pairs."""
    if isinstance(messages, (str, bytes, Mapping)) or not isinstance(messages, Sequence):
        raise TypeError(f"messages must be a list of {{'role': ..., 'content': ...}} dicts, "
                        f"not {type(messages).__name__}")
    if not messages:
        raise ValueError("messages is empty")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping):
            raise TypeError(f"messages[{i}] must be a dict, not {type(m).__name__}")
        for key in ("role", "content"):
            if key not in m:
                raise ValueError(f"messages[{i}] has no '{key}'")
            if not isinstance(m[key], str):
                raise TypeError(f"messages[{i}]['{key}'] must be a str, "
                                f"not {type(m[key]).__name__}")
        if not m["role"]:
            raise ValueError(f"messages[{i}]['role'] is empty")
        out.append((m["role"], m["content"]))
    return out


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
