"""The Python side of the web demo: one llamart Engine, driven by the page's worker.

worker.js runs this file in Pyodide and calls :func:`call` (``call(name, args_json, blob)``),
which returns JSON text: ``{"ok": true, ...}`` or ``{"ok": false, "error": "<plain words>",
"type": "<exception class>"}``. Two ways to generate: ``start`` (a raw prompt, completed as is)
and ``start_chat`` (a conversation rendered by the model's own Jinja chat template through
``engine.chat(messages, stream=True)``). Either is pulled one chunk at a time (``next``), so the
worker can post each chunk to the page and look at its messages (Stop) in between.

Nothing here is browser-specific except ``mount`` (llamart.web.mount_blob): the same session runs
natively for tests, on the native backend.
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Iterator
from typing import Any

from llamart import (
    ContextOverflowError,
    Engine,
    EngineStateError,
    LlamartError,
    ModelLoadError,
)
from llamart.errors import ChatTemplateError

# The wasm32 module's memory ends at 4 GiB; llama.cpp reads the whole model into it (no mmap)
# and needs room for the context and compute buffers besides.
MAX_MODEL_BYTES = 3 * 2**30
INFO_KEYS = ("general.name", "general.architecture", "general.type", "general.file_type",
             "tokenizer.ggml.model")
TEMPLATE_KEY = "tokenizer.chat_template"
# What chat mode renders to find out whether the model's template works at all.
PROBE_CHAT = [{"role": "system", "content": "You are a helpful assistant."},
              {"role": "user", "content": "Hello"}]


def _human_bytes(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} bytes"  # not reached


class DemoSession:
    """An Engine plus the state of the one generation the page may be running."""

    def __init__(self, backend: Any = None) -> None:
        self.engine = Engine(backend)
        self.names: dict[str, str] = {}  # path in the file system -> name the user knows
        self.model_name: str | None = None
        self._gen: Iterator[str] | None = None
        self._started = 0.0
        self._chunks = 0

    # ---- helpers
    def _plain(self, text: str) -> str:
        """``text`` with file-system paths replaced by the names the user picked."""
        for path, name in self.names.items():
            text = text.replace(path, f"“{name}”")
        return text

    def describe_error(self, exc: BaseException, doing: str) -> str:
        """What went wrong, in plain words, for the page."""
        if isinstance(exc, ModelLoadError):
            name = self.names.get(exc.path or "", exc.path or "the file")
            reason = self._plain(str(exc.reason))
            loaded = self.model_name and self.engine.model_info is not None
            still = f" The model “{self.model_name}” is still loaded." if loaded else ""
            return f"Could not load “{name}”: {reason}.{still}"
        if isinstance(exc, FileNotFoundError):
            return f"Could not {doing}: the file is not there ({self._plain(str(exc))})."
        if isinstance(exc, MemoryError):
            return (f"Could not {doing}: the browser ran out of memory for it. Try a smaller "
                    "model (a quantized one, or fewer parameters).")
        if isinstance(exc, ContextOverflowError):
            return f"The prompt is too long for this model's context window: {exc}."
        if isinstance(exc, ChatTemplateError):
            return f"Could not {doing}: the model's chat template failed: {self._plain(str(exc))}."
        if isinstance(exc, EngineStateError):
            return f"Could not {doing}: {self._plain(str(exc))}."
        if isinstance(exc, (ValueError, TypeError)):
            return f"Invalid setting: {exc}."
        if isinstance(exc, LlamartError):
            return f"Could not {doing}: {self._plain(str(exc))}."
        return f"Could not {doing}: {type(exc).__name__}: {self._plain(str(exc))}."

    # ---- calls from the page
    def capabilities(self) -> dict[str, Any]:
        caps = self.engine.capabilities
        return {"backend": caps.backend, "lora": caps.lora, "lora_reason": caps.lora_reason,
                "mmap": caps.mmap, "threads": caps.threads,
                "max_threads": caps.max_threads, "system_info": caps.system_info}

    def mount(self, blob: Any, name: str) -> dict[str, Any]:
        """Make a browser File/Blob readable by llama.cpp without copying it (WORKERFS)."""
        from llamart import web

        path = web.mount_blob(blob, name=name)
        self.names[path] = name
        return {"path": path}

    def name(self, path: str, name: str) -> dict[str, Any]:
        """Tell the session what the user calls the file at ``path`` (for messages)."""
        self.names[path] = name
        return {}

    def load(self, path: str, n_ctx: int, size: int | None = None) -> dict[str, Any]:
        """Load a model; returns its facts for the page."""
        name = self.names.get(path, path)
        if size is not None and size > MAX_MODEL_BYTES:
            raise ModelLoadError(
                f"{path}: the model is too large ({_human_bytes(size)}); this WebAssembly "
                f"build holds models up to about {_human_bytes(MAX_MODEL_BYTES)}",
                path=path,
                reason=f"the model is too large ({_human_bytes(size)}); in the browser "
                       f"llamart holds models up to about {_human_bytes(MAX_MODEL_BYTES)}")
        self._close_generation()
        started = time.perf_counter()
        info = self.engine.load_model(path, n_ctx=n_ctx)
        self.model_name = name
        meta = info.metadata
        return {
            "name": name,
            "seconds": round(time.perf_counter() - started, 3),
            "description": info.description,
            "n_params": info.n_params,
            "size": info.size,
            "size_text": _human_bytes(info.size),
            "n_vocab": info.n_vocab,
            "n_ctx": info.n_ctx,
            "n_ctx_train": info.n_ctx_train,
            "n_embd": info.n_embd,
            "n_layer": info.n_layer,
            "metadata": {k: meta[k] for k in INFO_KEYS if k in meta},
            "n_metadata": len(meta),
            "chat": self.chat_support(),
        }

    def chat_support(self) -> dict[str, Any]:
        """Whether chat mode works for the loaded model: its template renders a probe chat.

        ``{"available": bool, "reason": str | None, "template_chars": int}``; the reason says
        why not (no ``tokenizer.chat_template``, or the error the template raised).
        """
        source = self.engine.metadata.get(TEMPLATE_KEY)
        chars = len(source) if isinstance(source, str) else 0
        try:
            self.engine.apply_chat_template(PROBE_CHAT)
        except ChatTemplateError as e:
            return {"available": False, "reason": self._plain(str(e)), "template_chars": chars}
        except ImportError as e:  # jinja2/markupsafe not installed in this Python
            return {"available": False, "template_chars": chars,
                    "reason": f"chat templates need jinja2, which is not installed ({e})"}
        return {"available": True, "reason": None, "template_chars": chars}

    def start(self, prompt: str, max_tokens: int, temperature: float, top_k: int, top_p: float,
              seed: int | None, repeat_penalty: float = 1.1) -> dict[str, Any]:
        """Begin a generation (arguments are checked now); then call ``next`` until done."""
        self._close_generation()
        self._gen = self.engine.generate(prompt, max_tokens=max_tokens, temperature=temperature,
                                         top_k=top_k, top_p=top_p, seed=seed,
                                         repeat_penalty=repeat_penalty)
        self._started = time.perf_counter()
        self._chunks = 0
        return {}

    def start_chat(self, messages: list[dict[str, str]], max_tokens: int, temperature: float,
                   top_k: int, top_p: float, seed: int | None,
                   repeat_penalty: float = 1.1) -> dict[str, Any]:
        """Begin the assistant's reply to ``messages`` (``engine.chat(..., stream=True)``: the
        model's own template, ending at its end of turn); returns the rendered ``prompt``."""
        self._close_generation()
        prompt = self.engine.apply_chat_template(messages)
        self._gen = self.engine.chat(messages, max_tokens, stream=True, temperature=temperature,
                                     top_k=top_k, top_p=top_p, seed=seed,
                                     repeat_penalty=repeat_penalty)
        self._started = time.perf_counter()
        self._chunks = 0
        return {"prompt": prompt}

    def next(self) -> dict[str, Any]:
        """The next chunk ``{"text": ...}``, or ``{"done": true, ...}`` at the end."""
        if self._gen is None:
            raise EngineStateError("no generation is running")
        try:
            chunk = next(self._gen)
        except StopIteration:
            return self._finish()
        except BaseException:
            self._gen = None
            raise
        self._chunks += 1
        return {"text": chunk}

    def stop(self) -> dict[str, Any]:
        """End the running generation now (finish reason "cancelled")."""
        self._close_generation()
        return self._finish()

    def _close_generation(self) -> None:
        if self._gen is not None:
            gen, self._gen = self._gen, None
            gen.close()  # type: ignore[attr-defined]

    def _finish(self) -> dict[str, Any]:
        self._gen = None
        usage = self.engine.last_usage or {}
        seconds = time.perf_counter() - self._started
        n = int(usage.get("completion_tokens", 0))
        return {"done": True, "reason": self.engine.last_finish_reason, "tokens": n,
                "prompt_tokens": usage.get("prompt_tokens"), "seed": usage.get("seed"),
                "seconds": round(seconds, 3),
                "tokens_per_second": round(n / seconds, 1) if seconds > 0 and n else None}

    def set_lora(self, path: str, scale: float) -> dict[str, Any]:
        """``engine.set_lora`` exactly as user code would call it; reports what it returned,
        the warnings it issued, and ``engine.loras`` afterwards."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            applied = self.engine.set_lora(path, scale)
        return {
            "applied": applied,
            "loras": {self.names.get(p, p): s for p, s in self.engine.loras.items()},
            "warnings": [{"category": w.category.__name__, "message": self._plain(str(w.message))}
                         for w in caught],
            "lora_capability": self.engine.capabilities.lora,
        }

    def adapter_info(self, path: str) -> dict[str, Any]:
        """The adapter file's alpha, rank and targets (read by llamart's own GGUF reader)."""
        meta = self.engine.lora_metadata(path)
        return {k: meta[k] for k in ("alpha", "rank", "targets", "task_name", "architecture")}


_DOING = {"load": "load the model", "start": "start generating", "next": "generate",
          "start_chat": "start the reply", "chat_support": "check the chat template",
          "stop": "stop", "set_lora": "apply the adapter", "mount": "open the file",
          "adapter_info": "read the adapter"}
session: DemoSession | None = None


def call(name: str, args_json: str = "[]", blob: Any = None) -> str:
    """Run one session method for the worker; JSON text back, errors as plain words."""
    global session
    try:
        if name == "init":
            session = DemoSession()
            return json.dumps({"ok": True, **session.capabilities()})
        if session is None:
            raise EngineStateError("the engine is not started yet")
        args = json.loads(args_json)
        if name == "mount":
            result = session.mount(blob, *args)
        elif name in ("capabilities", "name", "load", "start", "start_chat", "next", "stop",
                      "set_lora", "adapter_info", "chat_support"):
            result = getattr(session, name)(*args)
        else:
            raise ValueError(f"unknown call {name!r}")
        return json.dumps({"ok": True, **result})
    except Exception as e:  # every failure goes back to the page, which stays usable
        text = (session.describe_error(e, _DOING.get(name, name)) if session is not None
                else f"Could not start the engine: {type(e).__name__}: {e}")
        return json.dumps({"ok": False, "error": text, "type": type(e).__name__})
