"""The multi-turn chat job: a 12-turn SmolLM2 conversation, each turn's wall time.

Each user turn is ~80 new prompt tokens (sentences from a fixed list), each reply at most 24
greedy tokens, 2 threads. Systems, each in its own child process, one after another in one run:

- ``llamart``: ``Engine.chat`` (the evaluated prefix is reused across turns);
- ``llamart-no-reuse``: the same, with the KV cache cleared before each turn (what llamart did
  before prefix reuse: every turn re-evaluates the whole history);
- ``llama-cpp-python``: ``Llama.create_chat_completion`` (it reuses the evaluated prefix too),
  when the bench venv has it (``python -m bench`` installs it).

The report gives the per-turn seconds and turn 12 / turn 1. ``python -m bench --chat-only``.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

N_TURNS = 12
REPLY_TOKENS = 24
THREADS = 2
N_CTX = 2048
_SENTENCES = [
    "The lighthouse keeper wrote down the weather every morning before sunrise.",
    "Our team is planning a small garden with tomatoes, basil and three kinds of peppers.",
    "A train left the northern station at noon and crossed the long river bridge.",
    "Please explain how bread rises when yeast is mixed into warm water and flour.",
    "The museum opened a new room for old maps drawn by sailors centuries ago.",
    "My grandmother keeps a notebook of recipes that she learned from her neighbours.",
    "Every winter the village holds a market where people trade wool, honey and tools.",
    "The students measured the shadow of a stick to estimate the height of the school.",
]


def user_turns() -> list[str]:
    """N_TURNS user messages of about 80 tokens each (four sentences and a question)."""
    out = []
    for i in range(N_TURNS):
        picked = [_SENTENCES[(i + k) % len(_SENTENCES)] for k in range(4)]
        out.append(f"Turn {i + 1}. " + " ".join(picked) + " What do you think about this?")
    return out


def run_turns(chat: Any, reset: Any = None) -> dict[str, Any]:
    """Time chat(messages) -> reply text over the conversation (reset() before each turn)."""
    messages: list[dict[str, str]] = [{"role": "system",
                                       "content": "You are a helpful assistant."}]
    seconds = []
    for text in user_turns():
        messages.append({"role": "user", "content": text})
        if reset is not None:
            reset()
        started = time.perf_counter()
        reply = chat(messages)
        seconds.append(time.perf_counter() - started)
        messages.append({"role": "assistant", "content": reply})
    return {"turn_s": seconds}


def llamart_chat(job: dict[str, Any]) -> dict[str, Any]:
    """The job bench.worker_llamart runs: the conversation through llamart's Engine."""
    from llamart import Engine

    engine = Engine("native")
    engine.load_model(job["model"], n_ctx=N_CTX, n_threads=THREADS)
    try:
        def chat(messages: list[dict[str, str]]) -> str:
            return engine.chat(messages, max_tokens=REPLY_TOKENS, temperature=0.0,
                               repeat_penalty=1.0)
        # no reuse: clear the KV cache as the engine did before each call (bench-only access)
        reset = engine.reset if not job.get("reuse", True) else None
        run_turns(chat, reset)  # warm-up conversation (page cache, allocations)
        engine.logits("x")  # and a cache that shares nothing with the timed one
        return run_turns(chat, reset)
    finally:
        engine.dispose()


def llama_cpp_python_chat(model: str) -> dict[str, Any]:
    """The same conversation through llama-cpp-python (run by the bench venv's Python)."""
    from llama_cpp import Llama

    llm = Llama(model_path=model, n_ctx=N_CTX, n_threads=THREADS, n_threads_batch=THREADS,
                verbose=False)

    def chat(messages: list[dict[str, str]]) -> str:
        out = llm.create_chat_completion(messages, max_tokens=REPLY_TOKENS, temperature=0.0,
                                         repeat_penalty=1.0)
        return out["choices"][0]["message"]["content"] or ""
    run_turns(chat)
    llm.reset()
    return run_turns(chat)


def measure(model: str, log: Any = print) -> dict[str, Any]:
    """Run the three systems one after another; system -> {"turn_s": [...]} or {"error"}."""
    from . import systems
    from .proc import BenchError

    out: dict[str, Any] = {}
    for name, reuse in (("llamart", True), ("llamart-no-reuse", False)):
        try:
            res = systems.run_llamart_job({"kind": "chat", "model": model, "reuse": reuse})
            out[name] = res
            log(f"bench: chat {name}: turn 1 {res['turn_s'][0]:.2f} s, turn {N_TURNS} "
                f"{res['turn_s'][-1]:.2f} s")
        except BenchError as e:
            out[name] = {"error": str(e)[:500]}
            log(f"bench: chat {name} failed: {e}")
    try:
        systems.ensure_llama_cpp_python(log)
        res = systems.run_venv_script(__file__, {"model": model})
        out["llama-cpp-python"] = res
        log(f"bench: chat llama-cpp-python: turn 1 {res['turn_s'][0]:.2f} s, turn {N_TURNS} "
            f"{res['turn_s'][-1]:.2f} s")
    except Exception as e:  # noqa: BLE001 - reported, the other systems still count
        out["llama-cpp-python"] = {"error": f"{type(e).__name__}: {e}"[:500]}
        log(f"bench: chat llama-cpp-python unavailable: {e}")
    return out


if __name__ == "__main__":  # the bench venv's Python: python bench/chat.py JOB_JSON
    result = llama_cpp_python_chat(json.loads(sys.argv[1])["model"])
    print("BENCH-RESULT " + json.dumps(result), flush=True)
