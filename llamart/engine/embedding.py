"""Embeddings: checking ``Engine.embed``'s arguments and running it on a backend.

One vector per text, from a llama.cpp context of its own (made on the first call, remade when
the pooling type changes; see backends/embed.cpp), so embedding never disturbs a generation.
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
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any

from ..bindings._c_api import POOLING_NAMES
from ..bindings.base import Backend
from ..errors import ContextOverflowError, UnsupportedCapabilityError, backend_errors
from ..params import check_bool
from .inputs import tokenize

POOLINGS = POOLING_NAMES  # "mean", "cls", "last": the C API's LM_POOLING_* names

__all__ = ["POOLINGS", "check_pooling", "check_texts", "embed", "embedding_pooling"]


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
          guard: AbstractContextManager[object]) -> list[array.array]:
    """``Engine.embed``, inside ``guard`` (the engine's lock with the model's weights loaded;
    entered first, so a missing model is reported before bad arguments)."""
    with guard:
        return _embed(backend, check_texts(texts), check_bool("normalize", normalize),
                      check_pooling(pooling))


def _embed(backend: Backend, items: list[str], norm: bool, pool: str | None) -> list[array.array]:
    if not backend.capabilities.embeddings:
        raise UnsupportedCapabilityError(
            f"the {backend.capabilities.backend} backend does not compute embeddings")
    if not items:
        return []
    with backend_errors("embed"):
        window = backend.embedding_window()
        backend.embedding_pooling(pool)  # the model's own may be unusable (e.g. rank)
    tokens = [tokenize(backend, t, True, False) for t in items]
    for i, seq in enumerate(tokens):
        if not seq:
            raise ValueError(f"texts[{i}] has no tokens: nothing to embed")
        if len(seq) > window:
            raise ContextOverflowError(
                f"texts[{i}] has {len(seq)} tokens; the embedding window is {window} "
                "(min of n_ctx and n_batch: load the model with a larger n_batch)")
    with backend_errors("embed"):
        return backend.embed(tokens, pool, norm)


def embedding_pooling(backend: Backend, pooling: Any,
                      guard: AbstractContextManager[object]) -> str:
    """``Engine.embedding_pooling``: the pooling ``embed(..., pooling=pooling)`` uses on the
    loaded model (inside ``guard``, as :func:`embed`)."""
    with guard:
        pool = check_pooling(pooling)
        with backend_errors("embed"):
            return backend.embedding_pooling(pool)
