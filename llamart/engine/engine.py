"""The Engine: the public face of llamart, the same on every backend.

The Engine checks arguments and state once, maps backend failures to public exceptions and
serialises calls; a :class:`~llamart.bindings.base.Backend` only runs llama.cpp. The loaded
model is one record (:class:`~llamart.engine.model_state.LoadedModel`, with its
:class:`~llamart.engine.adapter_set.AdapterSet`); a generation is an object
(:class:`~llamart.engine.generation.Generation`). Decisions worth knowing (also in the README):

* Adapters are keyed by ``os.fspath(path)``, the string the caller passed: the same file
  spelt two ways counts as two adapters. ``loras`` keeps the order adapters were first set;
  a new scale for a known path keeps its place and does not read the file again.
* ``remove_lora`` of a path that is not set is a no-op returning ``False``.
* A generation's ``finish_reason`` (and ``last_finish_reason`` after it): ``"stop"``
  (end-of-generation token or a stop string), ``"length"`` (``max_tokens`` reached),
  ``"context"`` (the context window is full), ``"cancelled"`` (``cancel()``, closed early, or
  KeyboardInterrupt) or ``"error"`` (an exception ended it).
* One generation at a time: while one is streaming, calls that would disturb it (load, unload,
  LoRA changes, another generation, logits) raise EngineStateError from any thread; reading
  calls (tokenize, metadata, ...) wait for the current token and run. ``dispose()`` always
  works: it ends a suspended generation, whose next step then raises EngineStateError.
* ``load_model(..., vocab_only=True)`` loads the vocabulary only: tokenize, detokenize and
  apply_chat_template work; calls that need the weights raise EngineStateError.
"""

from __future__ import annotations

import array
import contextlib
import functools
import importlib
import os
import sys
import threading
import weakref
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, overload

from ..bindings.base import Backend, Capabilities, ModelInfo
from ..errors import (
    EngineStateError,
    LlamartError,
    UnsupportedCapabilityError,
    backend_errors,
    logged_backend_errors,
)
from ..gguf.model_files import check_adapter, check_model
from ..params import (
    UNSET,
    GenerationParams,
    ModelParams,
    SamplingOptions,
    check_bool,
    check_float,
    generation_params,
    model_params,
    model_signature,
    sampling_signature,
)
from . import embedding, inputs, structured
from .adapter_cache import check_lora_arg
from .adapter_set import lora_metadata, lora_unavailable
from .async_generation import AsyncGeneration
from .engine_lock import EngineLock
from .generation import FINISH_REASONS, Generation, GenerationRun
from .inputs import fspath, model_prompt_tokens
from .model_state import LoadedModel
from .scheduled_run import ScheduledRun
from .scheduler import Request
from .structured import check_structured

if TYPE_CHECKING:
    if sys.version_info >= (3, 11):
        from typing import Unpack
    else:  # the type checker's own typing_extensions; nothing imports it at run time
        from typing_extensions import Unpack

__all__ = ["Engine", "FINISH_REASONS", "default_backend_name", "default_threads"]

_BACKENDS = {
    "native": ("llamart.bindings.native", "NativeBackend"),
    "wasm": ("llamart.bindings.wasm", "WasmBackend"),
}
Messages = Sequence[Mapping[str, str]]


class ChatOptions(SamplingOptions, total=False):
    """The keywords of :meth:`Engine.chat` but ``stream`` (for its typing overloads)."""

    params: GenerationParams | None
    chat_template: str | None
    template_kwargs: Mapping[str, Any] | None
    response_format: Mapping[str, Any] | None
    lora: Mapping[str, float] | None


def default_backend_name() -> str:
    """``"wasm"`` inside Pyodide (``sys.platform == "emscripten"``), else ``"native"``."""
    return "wasm" if sys.platform == "emscripten" else "native"


def default_threads() -> int:
    """The number of CPU cores this process may run on (1 in WebAssembly: see
    ``Capabilities.max_threads`` for a threaded module's count)."""
    if sys.platform == "emscripten":
        return 1
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    return max(1, n)


def _engine_threads(caps: Capabilities) -> int:
    """n_threads=None: every core, the runtime's count where the backend caps it (wasm)."""
    if not caps.threads:
        return 1
    return caps.max_threads or default_threads()


def _resolve_backend(backend: str | Backend | None) -> Backend:
    if backend is None:
        backend = default_backend_name()
    if isinstance(backend, str):
        if backend not in _BACKENDS:
            raise ValueError(f"backend must be one of {sorted(_BACKENDS)} or a Backend "
                             f"instance, got {backend!r}")
        module_name, class_name = _BACKENDS[backend]
        try:
            cls = getattr(importlib.import_module(module_name), class_name)
            return cls()
        except (ImportError, OSError) as e:
            raise LlamartError(f"the {backend} backend is not available: {e}") from e
    if isinstance(backend, Backend):
        return backend
    raise TypeError(f"backend must be a str, a Backend or None, not {type(backend).__name__}")


class Engine:
    """Load a GGUF model, generate text, and manage LoRA adapters on any backend.

    ``Engine()`` picks the backend for the platform; ``Engine("native")`` or
    ``Engine("wasm")`` names one; a :class:`~llamart.bindings.base.Backend` instance is used
    as is. With ``strict=True``, LoRA calls on a backend without LoRA raise
    UnsupportedCapabilityError instead of warning and doing nothing.
    """

    def __init__(self, backend: str | Backend | None = None, *, strict: bool = False) -> None:
        self._strict = check_bool("strict", strict)
        self._backend = _resolve_backend(backend)
        self._lock = EngineLock()
        self._idle = threading.Condition(self._lock)  # notified when a generation ends
        self._owner: int | None = None  # the thread that last stepped the streaming generation
        self._disposed = False
        self._model: LoadedModel | None = None
        self._generation: GenerationRun | None = None  # the generation streaming now
        self._runs: weakref.WeakSet[ScheduledRun] = weakref.WeakSet()  # n_parallel > 1
        self.last_finish_reason: str | None = None
        self.last_usage: dict[str, int] | None = None

    # ---- state ----

    def _check(self, busy_what: str | None = None, *, wait: bool = True) -> None:
        """EngineStateError if disposed. Given what the call does, while a generation streams
        (n_parallel=1): a call from another thread waits its turn (in arrival order, as the
        lock is fair to waiters in practice); the thread stepping that generation is refused,
        since waiting for itself would never end. With ``wait`` False another thread's
        generation is no obstacle (the call does not touch the context). Call with the lock
        held."""
        while True:
            if self._disposed:
                raise EngineStateError("the engine has been disposed; create a new Engine")
            if busy_what is None or self._generation is None:
                return
            if self._owner == threading.get_ident():
                raise EngineStateError(f"cannot {busy_what} while a generation is streaming in "
                                       f"this thread; finish, close or cancel it first (other "
                                       f"threads wait their turn; n_parallel > 1 runs them at "
                                       f"once)")
            if not wait:
                return
            self._idle.wait()

    def _check_no_requests(self, what: str) -> None:
        model = self._model
        if model is not None and model.scheduler is not None and model.scheduler.busy:
            raise EngineStateError(f"cannot {what} while generations are running on it; "
                                   f"finish, close or cancel them first")

    @contextlib.contextmanager
    def _call(self, what: str, *, idle: bool = True) -> Iterator[LoadedModel | None]:
        """The engine's lock for the block, which gets the loaded model (or None)."""
        with self._lock:
            self._check(what if idle else None)  # waits while another thread streams
            yield self._model

    @contextlib.contextmanager
    def _with_model(self, what: str, *, idle: bool = True,
                    weights: bool = False) -> Iterator[LoadedModel]:
        with self._call(what, idle=idle) as model:
            if model is None:
                raise EngineStateError(f"no model is loaded: call load_model() before {what}")
            if weights:
                model.require_weights(what)
            yield model

    @property
    def capabilities(self) -> Capabilities:
        """What the backend can do (no model needed)."""
        return self._backend.capabilities

    @property
    def strict(self) -> bool:
        return self._strict

    @property
    def model_info(self) -> ModelInfo | None:
        """Facts about the loaded model, or None when no model is loaded."""
        self._check()
        return self._model.info if self._model else None

    @property
    def metadata(self) -> dict[str, str]:
        """The loaded model's GGUF metadata (a copy)."""
        with self._with_model("read metadata", idle=False) as model:
            return dict(model.info.metadata)

    @property
    def loras(self) -> dict[str, float]:
        """{path: scale} of the adapters applied now, in the order they were first set."""
        model = self._model
        if model is None:
            return {}
        return dict(model.default_lora) if model.scheduler else model.adapters.scales()

    @property
    def disposed(self) -> bool:
        return self._disposed

    def __repr__(self) -> str:
        model = self._model
        state = ("disposed" if self._disposed else
                 f"model={model.info.path if model else None!r} loras={len(self.loras)}")
        return f"<Engine backend={self._backend.name!r} {state}>"

    # ---- lifecycle ----

    def __enter__(self) -> Engine:
        self._check()
        return self

    def __exit__(self, *exc: object) -> None:
        self.dispose()

    @model_signature
    def load_model(self, path: str | os.PathLike[str], n_ctx: int | ModelParams = UNSET,
                   n_batch: int = UNSET, n_threads: int | None = UNSET, *,
                   use_mmap: bool = UNSET, vocab_only: bool = UNSET,
                   chat_template: str | None = UNSET, n_parallel: int = UNSET,
                   prompt_cache_mb: int = UNSET,
                   params: ModelParams | None = None) -> ModelInfo:
        """Load a GGUF model (unloading the current one first) and return its facts.

        The file is checked in Python (existence, GGUF structure) before llama.cpp sees it.
        A ModelParams may be passed as ``params`` or in place of ``n_ctx`` (then no other
        keyword: the defaults are ModelParams'). With
        ``vocab_only``, only the vocabulary is loaded (no weights, no context).
        ``chat_template`` (Jinja) replaces the model's own ``tokenizer.chat_template``.
        ``n_parallel`` > 1 gives the model that many sequences in one context: calls from
        many threads or tasks run at once and are batched (:mod:`llamart.engine.scheduler`); evicted
        sequences keep their KV in a prompt cache of ``prompt_cache_mb`` MB.
        """
        mp = model_params(n_ctx, {"n_batch": n_batch, "n_threads": n_threads,
                                  "use_mmap": use_mmap, "vocab_only": vocab_only,
                                  "chat_template": chat_template, "n_parallel": n_parallel,
                                  "prompt_cache_mb": prompt_cache_mb}, params)
        spath = fspath("path", path)
        threads = mp.n_threads or _engine_threads(self._backend.capabilities)
        if mp.n_parallel > 1 and not self._backend.capabilities.parallel:
            raise UnsupportedCapabilityError(
                f"n_parallel: the {self._backend.name} backend runs one sequence at a time")
        with self._call("load a model") as previous:
            self._check_no_requests("load a model")
            header = check_model(spath, vocab_only=mp.vocab_only)
            scales = self._unload_locked()
            try:
                with backend_errors("model", spath):
                    self._model = LoadedModel.load(self._backend, spath, header, mp, threads,
                                                   self._lock)
            except LlamartError:  # the previous model again, if there was one
                self._model = previous.reload(self._backend, scales, self._lock) \
                    if previous else None
                raise
            return self._model.info

    def unload_model(self) -> None:
        """Free the adapters, context and model (no-op without a model); ``loras`` becomes {}."""
        with self._call("unload the model"):
            self._check_no_requests("unload the model")
            self._unload_locked()

    def dispose(self) -> None:
        """Release everything the backend holds. Idempotent; the engine is unusable after."""
        if self._disposed:
            return
        with self._lock:
            if self._disposed:
                return
            self._generation = None  # a suspended generation raises on its next step
            self._idle.notify_all()  # waiting calls see the engine disposed
            try:
                self._unload_locked()
            finally:
                self._disposed = True
                with logged_backend_errors("backend dispose failed"):
                    self._backend.dispose()

    def _unload_locked(self) -> dict[str, float]:
        """Unload the model (if any); the adapter scales it had."""
        model, self._model = self._model, None
        if model is None:
            return {}
        scales = model.adapters.scales()
        model.unload(self._backend)
        return scales

    # ---- LoRA ----

    def set_lora(self, path: str | os.PathLike[str], scale: float = 1.0) -> bool:
        """Apply a LoRA adapter at ``scale`` (any finite number; 0 keeps it with no effect).

        A new path is read and loaded once; a known path only gets its new scale. Adapters
        stack. Returns True when applied, False when this backend cannot apply adapters (a
        LoraUnsupportedWarning is issued, or UnsupportedCapabilityError raised when strict).
        """
        self._check()
        spath = fspath("path", path)
        fscale = check_float("scale", scale)
        if lora_unavailable(self.capabilities, self._strict, "set_lora"):
            return False
        with self._with_model("change LoRA adapters", weights=True) as model:
            if model.scheduler is not None:  # the default set of later calls; loaded once
                model.lora_cache.release(model.lora_cache.acquire({spath: fscale}))
                model.default_lora[spath] = fscale
                return True
            model.adapters.set_scale(spath, fscale, functools.partial(
                check_adapter, spath, model.header, applicable=True))
            return True

    def remove_lora(self, path: str | os.PathLike[str]) -> bool:
        """Stop applying one adapter and free it. True if it was set; False for an unknown
        path (a no-op) or on a backend without LoRA."""
        self._check()
        spath = fspath("path", path)
        if lora_unavailable(self.capabilities, self._strict, "remove_lora"):
            return False
        with self._call("change LoRA adapters") as model:
            if model is not None and model.scheduler is not None:
                return model.default_lora.pop(spath, None) is not None
            return model is not None and model.adapters.remove(spath)

    def clear_loras(self) -> None:
        """Stop applying every adapter and free them: the base model again."""
        self._check()
        if lora_unavailable(self.capabilities, self._strict, "clear_loras"):
            return
        with self._call("change LoRA adapters") as model:
            if model is not None and model.scheduler is not None:
                model.default_lora.clear()
            elif model is not None:
                model.adapters.clear()

    def lora_metadata(self, path: str | os.PathLike[str]) -> dict[str, Any]:
        """An adapter file's alpha, rank, targets, task_name and architecture, plus
        ``loaded``, ``scale`` and ``metadata`` (the backend's view when loaded, else the
        file's keys). Works for any adapter file, loaded or not, on every backend."""
        return lora_metadata(fspath("path", path), self._call("read adapter metadata", idle=False))

    # ---- text ----

    def tokenize(self, text: str, add_special: bool = True,
                 parse_special: bool = False) -> list[int]:
        """The model's tokens for ``text`` (BOS etc. added when ``add_special``)."""
        return inputs.tokenize_checked(self._backend, text, add_special, parse_special,
                                       self._with_model("tokenize", idle=False))

    def detokenize(self, tokens: Sequence[int]) -> str:
        """The text of ``tokens`` (invalid UTF-8 becomes U+FFFD)."""
        return inputs.detokenize(self._backend, tokens, self._with_model("detokenize", idle=False))

    def apply_chat_template(self, messages: Messages, add_generation_prompt: bool = True, *,
                            chat_template: str | None = None, **template_kwargs: Any) -> str:
        """The prompt ``messages`` ([{"role": ..., "content": ...}, ...]) make with the model's
        Jinja chat template (or ``chat_template``), as transformers renders it: ending with
        the assistant's turn when ``add_generation_prompt``; ``template_kwargs`` (tools,
        documents, enable_thinking, ...) reach the template. ChatTemplateError on failure."""
        return inputs.chat_prompt(messages, add_generation_prompt, chat_template, template_kwargs,
                                  self._with_model("apply a chat template", idle=False))

    # ---- evaluation ----

    def logits(self, prompt: str | Sequence[int]) -> array.array:
        """Next-token logits (float32, n_vocab of them) after ``prompt``, as a fresh engine gives
        them (a prefix evaluated by the previous call is reused when it was evaluated under the
        same adapter set).

        Returns an ``array.array('f')`` (buffer protocol: ``numpy.asarray`` works on it).
        """
        with self._with_model("compute logits", weights=True) as model:
            tokens = model_prompt_tokens(self._backend, model, prompt, False, room=False)
            if model.scheduler is not None:
                return self._scheduled_logits(model, tokens)
            with backend_errors("eval"):
                self._backend.eval_prompt(tokens)
                return self._backend.logits()

    def _scheduled_logits(self, model: LoadedModel, tokens: list[int]) -> array.array:
        key, handles, release = self._adapters_for(model, None)
        req = Request(tokens, GenerationParams(max_tokens=0), 0, key, handles, logits_only=True)
        try:
            assert model.scheduler is not None
            model.scheduler.submit(req)
            with backend_errors("eval"):
                model.scheduler.pull(req)
                if req.error is not None:
                    raise req.error
            return req.logits
        finally:
            model.scheduler.cancel(req)
            release()

    def reset(self) -> None:
        """Forget the evaluated prompt (the KV cache): the next call evaluates its whole prompt
        (llama-cpp-python's ``Llama.reset``). Results are the same either way; only time differs."""
        with self._with_model("reset the evaluated prompt", weights=True) as model, \
                backend_errors("eval"):
            if model.scheduler is not None:
                model.scheduler.reset()
            else:
                self._backend.reset()

    def embed(self, texts: str | Sequence[str], normalize: bool = True,
              pooling: str | None = None, *,
              lora: Mapping[str, float] | None = None) -> list[array.array]:
        """One embedding (``array.array('f')``, n_embd floats) per text; a str is one text.

        ``pooling`` is "mean", "cls", "last" or None (the model's own; mean when it names none);
        ``normalize`` scales each vector to unit length. Computed in a context of their own,
        with the engine's LoRA adapters (or ``lora=``'s set, as on generate): a generation
        (even one streaming now) is not disturbed. A text over ``min(n_ctx, n_batch)`` tokens
        raises ContextOverflowError. See :mod:`llamart.engine.embedding`.
        """
        override = check_lora_arg(lora)
        if override and lora_unavailable(self.capabilities, self._strict, "lora="):
            override = None
        return embedding.embed(self._backend, texts, normalize, pooling,
                               self._embedding_guard(override))

    @contextlib.contextmanager
    def _embedding_guard(self, override: Mapping[str, float] | None) -> Iterator[LoadedModel]:
        """The lock with the adapter set an embedding is computed under applied: a parallel
        engine's requests leave the backend's active set alone (each slot has its own), but an
        earlier embed's ``lora=`` may have left its set there, and ``lora=`` names its own."""
        with self._with_model("compute embeddings", idle=False, weights=True) as model:
            if (model.scheduler is None and override is None) or not self.capabilities.lora:
                yield model
                return
            if model.scheduler is None and self._generation is not None:
                raise EngineStateError("cannot embed with lora= while a generation is streaming "
                                       "on an engine loaded with n_parallel=1")
            _key, handles, release = self._adapters_for(model, override)
            try:
                with backend_errors("adapter"):
                    self._backend.apply_adapters(handles)
                yield model
            finally:
                if model.scheduler is None:  # the engine's own set again
                    with logged_backend_errors("could not restore the adapters after embed"):
                        model.adapters.reapply(self._backend)
                release()

    def embedding_pooling(self, pooling: str | None = None) -> str:
        """The pooling :meth:`embed` uses for ``pooling`` on the loaded model."""
        return embedding.embedding_pooling(self._backend, pooling, self._with_model(
            "compute embeddings", idle=False, weights=True))

    def cancel(self) -> bool:
        """Ask the streaming generation (from any thread) to stop before its next token.

        Returns True if a generation was running. It ends with finish reason "cancelled".
        """
        gen = self._generation
        if gen is not None:
            return gen.cancel()
        runs = list(self._runs)
        return any([run.cancel() for run in runs])

    @sampling_signature
    def generate(self, prompt: str | Sequence[int],
                 max_tokens: int | GenerationParams = UNSET, *,
                 params: GenerationParams | None = None,
                 lora: Mapping[str, float] | None = None,
                 **options: Unpack[SamplingOptions]) -> Generation:
        """Stream the completion of ``prompt`` (a str or token ids) as a :class:`Generation`.

        Every GenerationParams field is a keyword; a GenerationParams may instead be passed as
        ``params`` or in place of ``max_tokens``. Arguments are checked now.
        """
        gp = generation_params("generate", max_tokens, options, params)
        return self._start(prompt, gp, parse_special=False, lora=lora)

    @sampling_signature
    def complete(self, prompt: str | Sequence[int],
                 max_tokens: int | GenerationParams = UNSET, *,
                 params: GenerationParams | None = None,
                 lora: Mapping[str, float] | None = None,
                 **options: Unpack[SamplingOptions]) -> str:
        """The whole completion of ``prompt`` as one string (see :meth:`generate`)."""
        gp = generation_params("complete", max_tokens, options, params)
        return self._start(prompt, gp, parse_special=False, lora=lora).text()

    @overload
    def chat(self, messages: Messages, max_tokens: int | GenerationParams = ..., *,
             stream: Literal[False] = ..., **options: Unpack[ChatOptions]) -> str: ...
    @overload
    def chat(self, messages: Messages, max_tokens: int | GenerationParams = ..., *,
             stream: Literal[True], **options: Unpack[ChatOptions]) -> Generation: ...

    @sampling_signature
    def chat(self, messages: Messages, max_tokens: int | GenerationParams = UNSET, *,
             stream: bool = False, params: GenerationParams | None = None,
             chat_template: str | None = None, template_kwargs: Mapping[str, Any] | None = None,
             response_format: Mapping[str, Any] | None = None,
             lora: Mapping[str, float] | None = None,
             **options: Unpack[SamplingOptions]) -> str | Generation:
        """The assistant's reply to ``messages`` (see :meth:`apply_chat_template`): the text,
        or with ``stream=True`` a :class:`Generation` of it; it ends at the end of the turn.
        ``response_format`` (OpenAI's or llama-cpp-python's shapes, see
        :func:`~llamart.engine.structured.response_format_schema`) makes the reply JSON."""
        check_bool("stream", stream)
        gen = self._chat("chat", messages, max_tokens, params, chat_template, template_kwargs,
                         response_format, options, lora)
        return gen if stream else gen.text()

    def _chat(self, entry: str, messages: Messages, max_tokens: Any,
              params: GenerationParams | None, chat_template: str | None,
              template_kwargs: Mapping[str, Any] | None,
              response_format: Mapping[str, Any] | None,
              options: dict[str, Any], lora: Any = None) -> Generation:
        """The reply's Generation for :meth:`chat` and :meth:`achat` (``entry`` names the
        public method in errors)."""
        gp = structured.with_response_format(
            generation_params(entry, max_tokens, options, params), response_format)
        prompt = self.apply_chat_template(messages, True, chat_template=chat_template,
                                          **dict(template_kwargs or {}))
        return self._start(prompt, gp, parse_special=True, add_bos=None, lora=lora)

    @sampling_signature
    def agenerate(self, prompt: str | Sequence[int],
                  max_tokens: int | GenerationParams = UNSET, *,
                  params: GenerationParams | None = None,
                  lora: Mapping[str, float] | None = None,
                  **options: Unpack[SamplingOptions]) -> AsyncGeneration:
        """Async twin of :meth:`generate`: each token is computed in a worker thread (inline
        where Python has no threads, e.g. Pyodide), so the event loop keeps running.
        ``await it.aclose()`` (or ``contextlib.aclosing``) frees the engine at once."""
        gp = generation_params("agenerate", max_tokens, options, params)
        return AsyncGeneration(self._start(prompt, gp, parse_special=False, lora=lora))

    @sampling_signature
    def achat(self, messages: Messages, max_tokens: int | GenerationParams = UNSET, *,
              params: GenerationParams | None = None, chat_template: str | None = None,
              template_kwargs: Mapping[str, Any] | None = None,
              response_format: Mapping[str, Any] | None = None,
              lora: Mapping[str, float] | None = None,
              **options: Unpack[SamplingOptions]) -> AsyncGeneration:
        """Async twin of ``chat(..., stream=True)``: the reply's chunks, async."""
        return AsyncGeneration(self._chat("achat", messages, max_tokens, params, chat_template,
                                          template_kwargs, response_format, options, lora))

    @sampling_signature
    async def acomplete(self, prompt: str | Sequence[int],
                        max_tokens: int | GenerationParams = UNSET, *,
                        params: GenerationParams | None = None,
                        lora: Mapping[str, float] | None = None,
                        **options: Unpack[SamplingOptions]) -> str:
        """Async twin of :meth:`complete`."""
        gp = generation_params("acomplete", max_tokens, options, params)
        return await AsyncGeneration(self._start(prompt, gp, parse_special=False,
                                                 lora=lora)).text()

    def _start(self, prompt: Any, gp: GenerationParams, *, parse_special: bool,
               add_bos: bool | None = True, lora: Any = None) -> Generation:
        override = check_lora_arg(lora)
        if override and lora_unavailable(self.capabilities, self._strict, "lora="):
            override = None  # the base model, with a warning (as set_lora)
        with self._lock:  # the stream queues when it starts (_streaming), not here: this may be
            # an event loop's thread, which must not block (async generations step elsewhere)
            parallel = self._model is not None and self._model.scheduler is not None
            self._check(None if parallel else "start a generation", wait=False)
        with self._call("start a generation", idle=False) as model:
            if model is None:
                raise EngineStateError("no model is loaded: call load_model() before "
                                       "start a generation")
            model.require_weights("start a generation")
            tokens = model_prompt_tokens(self._backend, model, prompt, parse_special, room=True,
                                         add_bos=add_bos)
            check_structured(self._backend, gp)
            if model.scheduler is None:
                if override is None:
                    return Generation(self, model, tokens, gp)
                gen = Generation(self, model, tokens, gp)
                gen._state.lora = self._adapters_for(model, override)  # noqa: SLF001
                return gen
            key, handles, release = self._adapters_for(model, override)
            run = ScheduledRun(model.scheduler, model, tokens, gp, key, handles, release,
                               on_end=self._record)
            self._runs.add(run)
            return Generation(None, None, tokens, gp, run=run)

    def _adapters_for(self, model: LoadedModel,
                      override: Mapping[str, float] | None) -> tuple[Any, list[Any], Any]:
        """The adapter key, handles and release function of a call's set (None: the
        engine's current one). Loads what is missing (errors name the file)."""
        if not self.capabilities.lora:
            return (), [], lambda: None
        lora = dict(model.default_lora if model.scheduler else model.adapters.scales()) \
            if override is None else dict(override)
        handles = model.lora_cache.acquire(lora)
        key = tuple((p, sc) for p, sc in lora.items() if sc != 0.0)
        return key, handles, functools.partial(self._release_adapters, model, list(lora))

    def _release_adapters(self, model: LoadedModel, paths: list[str]) -> None:
        with self._lock:
            model.lora_cache.release(paths)

    def _record(self, run: ScheduledRun) -> None:
        self.last_finish_reason, self.last_usage = run.finish_reason, run.usage

    def grammar_matches(self, grammar: str, text: str) -> bool:
        """Whether ``text`` is a whole sentence of the GBNF ``grammar`` (rule ``root``), by
        llama.cpp's own grammar engine; GrammarError if the grammar is refused."""
        return structured.grammar_matches(self._backend, grammar, text,
                                          self._with_model("match a grammar", idle=False))

    def json_schema_to_grammar(self, schema: str | Mapping[str, Any]) -> str:
        """The GBNF grammar llama.cpp's converter makes of a JSON schema (what
        ``json_schema=`` applies); GrammarError for a schema it does not support."""
        return structured.json_schema_to_grammar(
            self._backend, schema, self._call("convert a JSON schema", idle=False))

    # ---- what a Generation asks of its engine ----

    @contextlib.contextmanager
    def _streaming(self, gen: GenerationRun) -> Iterator[None]:
        """``gen`` is the streaming generation for the block; its result is recorded after."""
        with self._lock:
            self._check("start a generation")
            if gen.model is not self._model:
                raise EngineStateError("the model changed after generate() was called; "
                                       "call generate() again")
            self._generation, self._owner = gen, threading.get_ident()
            self.last_finish_reason = self.last_usage = None
        try:
            yield
        finally:
            with self._lock:
                if self._generation is gen:
                    self._generation = None
                    self.last_finish_reason, self.last_usage = gen.finish_reason, gen.usage
                    self._idle.notify_all()

    @contextlib.contextmanager
    def _turn(self, gen: GenerationRun) -> Iterator[Backend]:
        """The backend, for one step of ``gen`` (lock held; backend errors mapped)."""
        with self._lock, backend_errors("eval"):
            self._check()
            if self._generation is not gen:
                raise EngineStateError("this generation was ended by the engine")
            self._owner = threading.get_ident()
            yield self._backend

    @contextlib.contextmanager
    def _turn_any(self) -> Iterator[Backend]:
        """The backend under the lock, whoever streams (putting the engine's adapters back)."""
        with self._lock, backend_errors("adapter"):
            yield self._backend

    def _interrupt(self, gen: GenerationRun) -> bool:
        if self._generation is not gen:
            return False
        self._backend.request_cancel()  # stops a running step before its next token
        return True
