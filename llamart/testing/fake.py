"""FakeBackend: a pure-Python Backend double for testing code that uses an Engine.

``Engine(FakeBackend())`` behaves like an Engine on llama.cpp without a model file's weights
(any existing file loads), as httpx's MockTransport stands in for the network. Deterministic
and dependency-free: stdlib only, no numpy or gguf (runs in Pyodide).

Tokens: 0 <unk>, 1 <s> (BOS), 2 </s> (EOS, end of generation), 3..258 the bytes 0x00..0xFF,
then a few whole words. Logits are a pseudo-random function of the evaluated tokens and of the
active adapter set (sorted, zero scales dropped, like llama.cpp), so LoRA changes show up in
logits and stacking order does not. Embeddings are fake too, but honest about their pooling: each
token has a pseudo-random vector (a hash of the token and the adapter set); "mean" averages a
text's token vectors (a bag of tokens: word order does not count), "cls" takes the first's,
"last" the last's; the model's own pooling is mean. The embedding window is min(n_ctx, n_batch).

Test hooks: ``script`` (tokens next_tokens samples instead of sampling), ``fail_next(method,
kind, reason)``, ``on_next_token`` (called before each token next_tokens samples), ``counts``
(calls per method, "sampled": tokens sampled, "evaluated": prompt tokens eval_prompt did not
reuse), ``adapter_loads`` (load_adapter calls per path), ``violations`` (protocol misuse seen:
freeing an applied or freed adapter, leaking one at unload, calls after dispose, calls
interleaved from two threads).
"""

from __future__ import annotations

import array
import hashlib
import math
import os
import random
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from ..bindings._c_api import POOLING_NAMES
from ..bindings.base import BackendError, Capabilities, ErrorKind, ModelInfo, StepEnd
from ..params import GenerationParams, ModelParams

UNK, BOS, EOS = 0, 1, 2
BYTE0 = 3
SPECIALS = {UNK: "<unk>", BOS: "<s>", EOS: "</s>"}
WORDS = [b"hello", b" world", b"\xe2\x82\xac"]  # the last one is the euro sign
WORD0 = BYTE0 + 256
N_VOCAB = WORD0 + len(WORDS)
N_EMBD = 8
LORA_REASON = "LoRA adapters are not applied on the fake backend; use the native backend."
GRAMMAR_REASON = "the fake backend does not constrain output (capabilities.grammar is False)"


def byte_tokens(data: bytes) -> list[int]:
    """The fake's tokens for raw bytes (one token per byte)."""
    return [BYTE0 + b for b in data]


def word_token(word: bytes) -> int:
    return WORD0 + WORDS.index(word)


class FakeAdapter:
    """A handle returned by load_adapter."""

    def __init__(self, path: str, serial: int) -> None:
        self.path = path
        self.serial = serial

    def __repr__(self) -> str:
        return f"<FakeAdapter {self.path} #{self.serial}>"


class FakeBackend:
    """A :class:`~llamart.bindings.base.Backend` in pure Python: ``Engine(FakeBackend())``.

    It loads any existing file (the Engine checks it is GGUF first: write one with
    :mod:`llamart.testing.gguf_writer`), tokenizes bytes and a few words, samples from
    ``script`` or seeded pseudo-random logits, and applies adapters to its logits and
    embeddings; ``lora=False`` makes it a backend without LoRA (as the WebAssembly one).
    It never constrains output (``grammar``/``json_schema`` raise UnsupportedCapabilityError).
    The test hooks (``script``, ``fail_next``, ``counts``, ``violations``, ...) are listed in
    the module docstring.
    """

    name = "fake"

    def __init__(self, *, lora: bool = True) -> None:
        self.lora = lora
        self.script: list[int] = []
        self.on_next_token: Callable[[], None] | None = None
        self.counts: Counter[str] = Counter()
        self.adapter_loads: Counter[str] = Counter()
        self.violations: list[str] = []
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.loaded_path: str | None = None
        self.model_params: ModelParams | None = None
        self.n_threads: int | None = None
        self.ctx: list[int] = []
        self.has_logits = False
        self.active: list[tuple[FakeAdapter, float]] = []
        self.live: set[int] = set()
        self.disposed = False
        self._cancel = False
        self.sampler: GenerationParams | None = None
        self.seed: int | None = None
        self._rng = random.Random(0)
        self._serial = 0
        self._fail: dict[str, BackendError] = {}
        self._dirty = False
        self._owner: int | None = None
        self._guard = threading.Lock()

    # ---- test hooks ----

    def fail_next(self, method: str, kind: str = ErrorKind.LOAD, reason: str = "fake failure",
                  *, dirty: bool = False) -> None:
        """Make the next call of ``method`` raise BackendError(kind, reason). With ``dirty``,
        apply_adapters first changes the active set, then fails (the worst case)."""
        self._fail[method] = BackendError(kind, reason)
        self._dirty = dirty

    def _enter(self, method: str, *args: Any, before_fail: Callable[[], None] | None = None
               ) -> None:
        if self.disposed:
            self.violations.append(f"{method} called after dispose")
        with self._guard:
            me = threading.get_ident()
            if self._owner is not None and self._owner != me:
                self.violations.append(f"{method} interleaved with a call from another thread")
            self._owner = me
        self.counts[method] += 1
        self.calls.append((method, args))
        err = self._fail.pop(method, None)
        if err is not None:
            if before_fail is not None and self._dirty:
                before_fail()
            self._leave()
            raise err

    def _leave(self) -> None:
        with self._guard:
            self._owner = None

    def _need_model(self) -> None:
        if self.loaded_path is None:
            raise BackendError(ErrorKind.STATE, "no model loaded")

    # ---- Backend protocol ----

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(backend="fake", lora=self.lora, embeddings=True,
                            lora_reason=None if self.lora else LORA_REASON)

    def load_model(self, path: str, params: ModelParams, n_threads: int) -> ModelInfo:
        self._enter("load_model", path)
        try:
            if self.loaded_path is not None:
                self.violations.append("load_model while a model is loaded")
            if not os.path.isfile(path):
                raise BackendError(ErrorKind.LOAD, "failed to open file")
            self.loaded_path, self.model_params, self.n_threads = path, params, n_threads
            self.ctx, self.has_logits = [], False
            n_ctx = params.n_ctx or 256
            return ModelInfo(path=path, n_vocab=N_VOCAB, n_ctx=n_ctx, n_ctx_train=256,
                             n_batch=params.n_batch, n_embd=N_EMBD, n_layer=1, n_params=4242,
                             size=16968, description="fake 4K F32", bos=BOS, eos=EOS,
                             metadata={"general.architecture": "llama", "general.name": "fake"},
                             n_threads=n_threads)
        finally:
            self._leave()

    def unload_model(self) -> None:
        self._enter("unload_model")
        if self.live:
            self.violations.append(f"{len(self.live)} adapter(s) still loaded at unload")
        self.loaded_path, self.ctx, self.has_logits, self.active = None, [], False, []
        self.live.clear()
        self._leave()

    def dispose(self) -> None:
        self._enter("dispose")
        if self.loaded_path is not None:
            self.violations.append("dispose with a model still loaded")
        self.disposed = True
        self._leave()

    def tokenize(self, text: str, add_special: bool, parse_special: bool) -> list[int]:
        self._enter("tokenize", text, add_special, parse_special)
        try:
            self._need_model()
            out = [BOS] if add_special else []
            i = 0
            while i < len(text):
                if parse_special:
                    hit = next((t for t, s in SPECIALS.items() if text.startswith(s, i)), None)
                    if hit is not None:
                        out.append(hit)
                        i += len(SPECIALS[hit])
                        continue
                out.extend(byte_tokens(text[i].encode("utf-8")))
                i += 1
            return out
        finally:
            self._leave()

    def _piece(self, token: int) -> bytes:
        if token in SPECIALS:
            return b""
        if token < WORD0:
            return bytes([token - BYTE0])
        return WORDS[token - WORD0]

    def token_to_piece(self, token: int) -> bytes:
        self._enter("token_to_piece", token)
        try:
            return self._piece(token)
        finally:
            self._leave()

    def detokenize(self, tokens: Sequence[int]) -> bytes:
        self._enter("detokenize", list(tokens))
        try:
            return b"".join(self._piece(t) for t in tokens)
        finally:
            self._leave()

    def reset(self) -> None:
        self._enter("reset")
        self.ctx, self.has_logits = [], False
        self._leave()

    def eval_prompt(self, tokens: Sequence[int]) -> int:
        self._enter("eval_prompt", list(tokens))
        try:
            self._need_model()
            assert self.model_params is not None
            tokens = list(tokens)
            if any(not 0 <= t < N_VOCAB for t in tokens) or not tokens:
                raise BackendError(ErrorKind.ARG, "empty prompt or token outside the vocabulary")
            if len(tokens) > (self.model_params.n_ctx or 256):
                raise BackendError(ErrorKind.CONTEXT, "context full")
            reused = 0
            while reused < min(len(self.ctx), len(tokens)) and self.ctx[reused] == tokens[reused]:
                reused += 1
            if not (reused == len(tokens) == len(self.ctx) and self.has_logits):
                reused = min(reused, len(tokens) - 1)  # the last one again, for its logits
            self.ctx = tokens
            self.counts["evaluated"] += len(tokens) - reused
            self.has_logits = True
            return reused
        finally:
            self._leave()

    def _logits(self) -> list[float]:
        adapters = sorted((h.path, s) for h, s in self.active if s != 0.0)
        key = repr((self.ctx, adapters)).encode()
        rng = random.Random(hashlib.sha256(key).digest())
        return [rng.uniform(-4.0, 4.0) for _ in range(N_VOCAB)]

    def logits(self) -> array.array:
        self._enter("logits")
        try:
            if not self.has_logits:
                raise BackendError(ErrorKind.STATE, "no logits: nothing evaluated")
            return array.array("f", self._logits())
        finally:
            self._leave()

    def sampler_init(self, params: GenerationParams, seed: int) -> None:
        self._enter("sampler_init", params, seed)
        if params.grammar is not None or params.json_schema is not None:
            self._leave()
            raise BackendError(ErrorKind.UNSUPPORTED, GRAMMAR_REASON)
        self.sampler, self.seed = params, seed
        self._rng = random.Random(seed)
        self._leave()

    def sampler_accept(self, tokens: Sequence[int]) -> None:
        self._enter("sampler_accept", list(tokens))
        self._leave()

    def next_tokens(self, max_n: int, eval_last: bool) -> tuple[list[int], str]:
        self._enter("next_tokens", max_n, eval_last)
        try:
            if not self.has_logits or self.sampler is None:
                raise BackendError(ErrorKind.STATE, "sampling before any eval")
            out: list[int] = []
            while len(out) < max_n:
                if self._cancel:
                    self._cancel = False
                    return out, StepEnd.CANCELLED
                if self.on_next_token is not None:
                    self.on_next_token()
                self.counts["sampled"] += 1
                tok = self._sample()
                if tok == EOS:
                    return out, StepEnd.EOG
                out.append(tok)
                if len(out) == max_n and not eval_last:
                    break
                assert self.model_params is not None
                if len(self.ctx) + 1 > (self.model_params.n_ctx or 256):
                    return out, StepEnd.CONTEXT
                self.ctx.append(tok)
            return out, StepEnd.FULL
        finally:
            self._leave()

    def _sample(self) -> int:
        if self.script:
            return self.script.pop(0)
        assert self.sampler is not None
        logits = self._logits()
        if self.sampler.temperature <= 0:
            return max(range(N_VOCAB), key=logits.__getitem__)
        m = max(logits)
        w = [math.exp((x - m) / self.sampler.temperature) for x in logits]
        return self._rng.choices(range(N_VOCAB), weights=w)[0]

    def _token_vector(self, token: int) -> list[float]:
        adapters = sorted((h.path, s) for h, s in self.active if s != 0.0)
        rng = random.Random(hashlib.sha256(repr(("embd", token, adapters)).encode()).digest())
        return [rng.uniform(-1.0, 1.0) for _ in range(N_EMBD)]

    def embedding_window(self) -> int:
        self._enter("embedding_window")
        try:
            self._need_model()
            assert self.model_params is not None
            return min(self.model_params.n_ctx or 256, self.model_params.n_batch)
        finally:
            self._leave()

    def embedding_pooling(self, pooling: str | None) -> str:
        self._enter("embedding_pooling", pooling)
        try:
            if pooling is not None and pooling not in POOLING_NAMES:
                raise BackendError(ErrorKind.ARG, f"unknown pooling {pooling!r}")
            return pooling or "mean"
        finally:
            self._leave()

    def embed(self, tokens: Sequence[Sequence[int]], pooling: str | None,
              normalize: bool) -> list[array.array]:
        window = self.embedding_window()
        pool = self.embedding_pooling(pooling)
        self._enter("embed", [list(t) for t in tokens], pooling, normalize)
        try:
            out = []
            for seq in tokens:
                if not seq or any(not 0 <= t < N_VOCAB for t in seq):
                    raise BackendError(ErrorKind.ARG, "empty text or token outside the vocabulary")
                if len(seq) > window:
                    raise BackendError(ErrorKind.CONTEXT, f"{len(seq)} tokens; the embedding "
                                                          f"window is {window}")
                picked = {"mean": seq, "cls": seq[:1], "last": seq[-1:]}[pool]
                rows = [self._token_vector(t) for t in picked]
                v = [sum(col) / len(rows) for col in zip(*rows, strict=True)]
                norm = math.sqrt(sum(x * x for x in v))
                out.append(array.array("f", [x / norm for x in v] if normalize and norm else v))
            return out
        finally:
            self._leave()
    def check_grammar(self, grammar: str) -> None:
        self._enter("check_grammar", grammar)
        self._leave()
        raise BackendError(ErrorKind.UNSUPPORTED, GRAMMAR_REASON)

    def grammar_match(self, grammar: str, text: str) -> bool:
        self._enter("grammar_match", grammar, text)
        self._leave()
        raise BackendError(ErrorKind.UNSUPPORTED, GRAMMAR_REASON)

    def json_schema_to_grammar(self, schema: str) -> str:
        self._enter("json_schema_to_grammar", schema)
        self._leave()
        raise BackendError(ErrorKind.UNSUPPORTED, GRAMMAR_REASON)

    def request_cancel(self) -> None:
        self._cancel = True  # no _enter: the one call allowed from another thread mid-call

    def load_adapter(self, path: str) -> FakeAdapter:
        self._enter("load_adapter", path)
        try:
            if not self.lora:
                raise BackendError(ErrorKind.UNSUPPORTED, LORA_REASON)
            self._need_model()
            if not os.path.isfile(path):
                raise BackendError(ErrorKind.LOAD, "failed to open file")
            self.adapter_loads[path] += 1
            self._serial += 1
            self.live.add(self._serial)
            return FakeAdapter(path, self._serial)
        finally:
            self._leave()

    def free_adapter(self, handle: Any) -> None:
        self._enter("free_adapter", handle)
        if handle.serial not in self.live:
            self.violations.append(f"free of an adapter not loaded: {handle}")
        if any(h is handle for h, _ in self.active):
            self.violations.append(f"free of an adapter still applied: {handle}")
        self.live.discard(handle.serial)
        self._leave()

    def apply_adapters(self, adapters: Sequence[tuple[Any, float]]) -> None:
        def half_done() -> None:
            self.active = list(adapters)[:1]

        self._enter("apply_adapters", [(h.path, s) for h, s in adapters], before_fail=half_done)
        try:
            for h, _ in adapters:
                if h.serial not in self.live:
                    self.violations.append(f"apply of an adapter not loaded: {h}")
            self.active = list(adapters)
            self.ctx, self.has_logits = [], False  # like the C API: the KV cache is cleared
        finally:
            self._leave()

    def adapter_metadata(self, handle: Any) -> dict[str, str]:
        self._enter("adapter_metadata", handle)
        self._leave()
        return {"adapter.type": "lora", "fake.serial": str(handle.serial)}
