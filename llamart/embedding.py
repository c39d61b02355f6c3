"""Embeddings: checking ``Engine.embed``'s arguments and running it on a backend.

One vector per text, from a llama.cpp context of its own (made on the first call, remade when
the pooling type changes; see core/embed.cpp), so embedding never disturbs a generation.
Decisions (also in the README):

* ``pooling=None`` is the model's own (its GGUF's ``<arch>.pooling_type``). A model that names
  none -- every decoder-only chat model, e.g. SmolLM2 -- or names "none" gets **mean** pooling.
  (llama-cpp-python and llama-server default such models to "none": one vector per *token*;
  llama-server's OpenAI endpoint then refuses. llamart always returns one vector per text.)
* Texts are tokenized as ``tokenize(text)`` does (BOS when the model adds one, special tokens
  not parsed). A text must have 1 to ``min(n_ctx, n_batch)`` tokens (the embedding window: a
  pooled text must be computed in one ubatch): longer ones raise ContextOverflowError before
  any work; raise ``n_batch`` at load time to embed longer texts.
* Several texts are packed into one decode (distinct sequence ids) while they fit the window.
* Active LoRA adapters apply to embeddings as to generation.
"""

from __future__ import annotations

import array
from collections.abc import Callable, Sequence
from typing import Any

from .backends.base import Backend
from .errors import ContextOverflowError, UnsupportedCapabilityError, backend_errors
from .params import check_bool

POOLINGS = ("mean", "cls", "last")

__all__ = ["POOLINGS", "check_pooling", "check_texts", "embed"]


def check_texts(texts: Any) -> list[str]:
    """``texts`` (a str, or a sequence of str) as a list."""
    if isinstance(texts, str):
        return [texts]
    if isinstance(texts, (bytes, bytearray)) or not isinstance(texts, Sequence):
        raise TypeError(f"texts must be a str or a sequence of str, not {type(texts).__name__}")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"texts[{i}] must be a str, not {type(t).__name__}")
    return list(texts)


def check_pooling(pooling: Any) -> str | None:
    if pooling is not None and pooling not in POOLINGS:
        raise ValueError(f"pooling must be None (the model's) or one of {POOLINGS}, "
                         f"got {pooling!r}")
    return pooling


def embed(backend: Backend, texts: Any, normalize: Any, pooling: Any,
          tokenize: Callable[[str], list[int]]) -> list[array.array]:
    """The Engine's embed, with the model loaded and the engine lock held."""
    items = check_texts(texts)
    norm = check_bool("normalize", normalize)
    pool = check_pooling(pooling)
    if not backend.capabilities.embeddings:
        raise UnsupportedCapabilityError(
            f"the {backend.capabilities.backend} backend does not compute embeddings")
    if not items:
        return []
    with backend_errors("embed"):
        window = backend.embedding_window()
        backend.embedding_pooling(pool)  # the model's own may be unusable (e.g. rank)
    tokens = [tokenize(t) for t in items]
    for i, seq in enumerate(tokens):
        if not seq:
            raise ValueError(f"texts[{i}] has no tokens: nothing to embed")
        if len(seq) > window:
            raise ContextOverflowError(
                f"texts[{i}] has {len(seq)} tokens; the embedding window is {window} "
                "(min of n_ctx and n_batch: load the model with a larger n_batch)")
    with backend_errors("embed"):
        return backend.embed(tokens, pool, norm)


def embedding_pooling(backend: Backend, pooling: Any) -> str:
    """The pooling ``embed(..., pooling=pooling)`` uses on the loaded model."""
    pool = check_pooling(pooling)
    with backend_errors("embed"):
        return backend.embedding_pooling(pool)
