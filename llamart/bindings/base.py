"""The Backend protocol: the few calls the Engine needs from a llama.cpp build.

A backend owns at most one loaded model. It does no argument validation and keeps no LoRA
bookkeeping (the Engine does both); it reports failures as :class:`BackendError` carrying
llama.cpp's own reason, and the Engine picks the public exception type.
"""

from __future__ import annotations

import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from ..params import GenerationParams, ModelParams


class ErrorKind:
    """Why a backend call failed (mirrors the LM_ERR_* codes of backends/llamart.h)."""

    ARG = "arg"
    CONTEXT = "context"
    DECODE = "decode"
    ALLOC = "alloc"
    STATE = "state"
    LOAD = "load"  # model or adapter refused by llama.cpp
    UNSUPPORTED = "unsupported"
    GRAMMAR = "grammar"  # a grammar or JSON schema refused, or no token continues the grammar


class StepEnd:
    """Why :meth:`Backend.next_tokens` returned before ``max_n`` tokens (mirrors LM_EOG etc.)."""

    FULL = ""  # max_n tokens sampled
    EOG = "eog"  # an end-of-generation token was sampled (not returned)
    CONTEXT = "context"  # the context is full: the last token returned was not evaluated
    CANCELLED = "cancelled"  # request_cancel() was called (possibly by another thread)


class BackendError(Exception):
    """A backend call failed; ``reason`` is llama.cpp's message (from its log)."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do. Code branches on these flags, never on the platform name."""

    backend: str
    lora: bool
    lora_reason: str | None = None
    mmap: bool = True
    threads: bool = True
    max_threads: int | None = None  # n_threads is capped at this (wasm: the cores); None: no cap
    embeddings: bool = False  # Backend.embed works
    system_info: str = ""
    grammar: bool = False  # GenerationParams.grammar constrains sampling
    json_schema: bool = False  # GenerationParams.json_schema (llama.cpp's converter)
    parallel: bool = False  # ParallelBackend: n_parallel > 1 (slots, lm_step)


@dataclass(frozen=True)
class ModelInfo:
    """Facts about a loaded model, read once at load time."""

    path: str
    n_vocab: int
    n_ctx: int
    n_ctx_train: int
    n_batch: int
    n_embd: int
    n_layer: int
    n_params: int
    size: int
    description: str
    bos: int
    eos: int
    metadata: dict[str, str] = field(default_factory=dict)
    n_threads: int = 1  # threads the context computes with (after the backend's cap)


@runtime_checkable
class Backend(Protocol):
    """One llama.cpp build (native cffi, WebAssembly, or a test double)."""

    name: str

    @property
    def capabilities(self) -> Capabilities: ...

    # lifecycle
    def load_model(self, path: str, params: ModelParams, n_threads: int) -> ModelInfo: ...
    def unload_model(self) -> None: ...
    def dispose(self) -> None: ...

    # text
    def tokenize(self, text: str, add_special: bool, parse_special: bool) -> list[int]: ...
    def token_to_piece(self, token: int) -> bytes: ...
    def detokenize(self, tokens: Sequence[int]) -> bytes: ...
    # evaluation (the KV cache starts at position 0 after reset)
    def reset(self) -> None: ...
    def eval_prompt(self, tokens: Sequence[int]) -> int:
        """Evaluate a whole prompt from position 0, decoding only what follows the longest
        prefix the KV cache already holds (computed under the active adapter set: applying
        adapters clears it). Returns the number of tokens reused."""
        ...
    def logits(self) -> array.array: ...  # typecode "f", n_vocab floats, a copy

    # sampling: init once per generation, then next_tokens until it ends
    def sampler_init(self, params: GenerationParams, seed: int) -> None: ...
    def sampler_accept(self, tokens: Sequence[int]) -> None: ...
    def next_tokens(self, max_n: int, eval_last: bool) -> tuple[list[int], str]:
        """Sample up to max_n tokens, evaluating each (the last only if eval_last).

        Returns the tokens and a :class:`StepEnd` saying why it stopped early ("" if not).
        """
        ...

    # structured output (only called when capabilities.grammar / .json_schema is True);
    # sampler_init applies params.grammar, or params.json_schema converted
    def check_grammar(self, grammar: str) -> None:
        """BackendError(GRAMMAR, llama.cpp's reason) unless the GBNF grammar can be used."""
        ...

    def grammar_match(self, grammar: str, text: str) -> bool:
        """Whether ``text`` is a whole sentence of the GBNF grammar (llama.cpp's matcher)."""
        ...

    def json_schema_to_grammar(self, schema: str) -> str:
        """The GBNF grammar of a JSON schema (JSON text); BackendError(GRAMMAR) if refused."""
        ...

    def request_cancel(self) -> None:
        """Make a running (or the next) next_tokens return StepEnd.CANCELLED before its next
        token. The one call safe from another thread while next_tokens runs."""
        ...

    # embeddings (only called when capabilities.embeddings is True); generation state untouched
    def embed(self, tokens: Sequence[Sequence[int]], pooling: str | None,
              normalize: bool) -> list[array.array]:
        """One vector (typecode "f") per token list, pooled "mean", "cls", "last" or (None)
        the model's own way; L2-normalised when ``normalize``. Each list has 1 to
        :meth:`embedding_window` tokens (more: BackendError CONTEXT, before any work)."""
        ...

    def embedding_pooling(self, pooling: str | None) -> str: ...  # what ``pooling`` resolves to
    def embedding_window(self) -> int: ...  # tokens one embedded text may have

    # LoRA (only called when capabilities.lora is True)
    def load_adapter(self, path: str) -> Any: ...
    def free_adapter(self, handle: Any) -> None: ...
    def apply_adapters(self, adapters: Sequence[tuple[Any, float]]) -> None: ...
    def adapter_metadata(self, handle: Any) -> dict[str, str]: ...


@runtime_checkable
class ParallelBackend(Protocol):
    """The slot calls of a backend with ``capabilities.parallel`` (backends/slots.cpp): a model
    loaded with ``ModelParams.n_parallel`` > 1 has that many sequences (slots) in one context.
    Only the Engine's scheduler calls them."""

    def slot_prompt(self, slot: int, tokens: Sequence[int]) -> int: ...
    def slot_sampler_init(self, slot: int, params: GenerationParams, seed: int,
                          prompt: Sequence[int]) -> None: ...
    def slot_clear(self, slot: int) -> None: ...
    def slot_adapters(self, slot: int, adapters: Sequence[tuple[Any, float]]) -> None:
        """The slot's own adapter set (with ``capabilities.lora``): it is prompted and decoded
        under it whatever the active set is, beside slots under other sets in one step."""
    def slot_tokens(self, slot: int) -> list[int]: ...
    def step(self, slots: Sequence[int], budgets: Sequence[int],
             rounds: int) -> tuple[list[tuple[list[int], int]], bool, str]: ...
    def slot_logits(self, slot: int) -> array.array: ...
    def slot_state_save(self, slot: int) -> bytes: ...
    def slot_state_load(self, slot: int, tokens: Sequence[int], data: bytes) -> None: ...
