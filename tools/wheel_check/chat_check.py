"""Runs inside Pyodide after ``micropip.install`` of the llamart wheel: one chat with a model.

``chat_report(path)`` returns JSON: which module loaded, the capabilities, where llamart was
imported from, whether importing it loaded anything (lazy), the reply and the timings. The Node
driver, the README page check and the PyScript page all run this same file.
"""

from __future__ import annotations

import json
import sys
import time

QUESTION = "What is the capital of France?"


def chat_report(model_path: str) -> str:
    """Import llamart, make an Engine, load ``model_path`` and ask :data:`QUESTION`."""
    started = time.monotonic()
    import llamart
    from llamart import Engine

    lazy = "llamart_wasm" not in sys.modules
    with Engine() as engine:
        made = time.monotonic()
        import llamart_wasm  # type: ignore[import-not-found]  # registered by Engine()

        caps = engine.capabilities
        engine.load_model(model_path, n_ctx=512)
        loaded = time.monotonic()
        reply = engine.chat([{"role": "user", "content": QUESTION}], max_tokens=24,
                            temperature=0.0)
        done = time.monotonic()
    return json.dumps({
        "reply": str(reply), "build": str(llamart_wasm.llamartBuild),
        "lora": caps.lora, "threads": caps.threads, "max_threads": caps.max_threads,
        "llamart_file": llamart.__file__, "version": llamart.__version__, "lazy": lazy,
        "seconds": {"engine": round(made - started, 2), "load": round(loaded - made, 2),
                    "chat": round(done - loaded, 2)},
    })
