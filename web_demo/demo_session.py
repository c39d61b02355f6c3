"""The Python side of the web demo: one llamart Engine, driven by the page's worker.

worker.js runs this file in Pyodide and calls :func:`call` (``call(name, args_json, blob)``),
which returns JSON text: ``{"ok": true, ...}`` or ``{"ok": false, "error": "<plain words>",
"type": "<exception class>"}``. Generation is pulled one chunk at a time (``next``), so the
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

# The wasm32 module's memory ends at 4 GiB; llama.cpp reads the whole model into it (no mmap)
# and needs room for the context and compute buffers besides.
MAX_MODEL_BYTES = 3 * 2**30
INFO_KEYS = ("general.name", "general.architecture", "general.type", "general.file_type",
             "tokenizer.ggml.model")


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
                "streaming": caps.streaming, "mmap": caps.mmap, "threads": caps.threads,
                "system_info": caps.system_info}

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
        }

    def start(self, prompt: str, max_tokens: int, temperature: float, top_k: int, top_p: float,
              seed: int | None) -> dict[str, Any]:
        """Begin a generation (arguments are checked now); then call ``next`` until done."""
        self._close_generation()
        self._gen = self.engine.generate(prompt, max_tokens=max_tokens, temperature=temperature,
                                         top_k=top_k, top_p=top_p, seed=seed)
        self._started = time.perf_counter()
        self._chunks = 0
        return {}

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
        elif name in ("capabilities", "name", "load", "start", "next", "stop", "set_lora",
                      "adapter_info"):
            result = getattr(session, name)(*args)
        else:
            raise ValueError(f"unknown call {name!r}")
        return json.dumps({"ok": True, **result})
    except Exception as e:  # every failure goes back to the page, which stays usable
        text = (session.describe_error(e, _DOING.get(name, name)) if session is not None
                else f"Could not start the engine: {type(e).__name__}: {e}")
        return json.dumps({"ok": False, "error": text, "type": type(e).__name__})
