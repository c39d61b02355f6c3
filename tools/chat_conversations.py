"""Conversations the chat-template tests render (shared by the native and Pyodide comparisons)."""

from __future__ import annotations

CONVERSATIONS: dict[str, list[dict[str, str]]] = {
    "system+user": [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "What is the capital of France?"},
    ],
    "user only": [{"role": "user", "content": "Hello! Ünïcödé and emoji 🦙 ok?"}],
    "multi-turn": [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "Name a colour.\nJust one."},
    ],
}
BOS, EOS = "<s>", "</s>"


def llama_cpp_templates() -> list[str]:
    """The real chat templates that the pinned llama.cpp source ships (empty when absent)."""
    try:
        from tools.llama_cpp_pin import source_dir

        folder = source_dir() / "models" / "templates"
    except OSError:  # no cmake/ here (Pyodide): no pinned source either
        return []
    return sorted(str(p) for p in folder.glob("*.jinja"))
