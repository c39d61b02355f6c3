"""SmolLM2's own chat template: llamart's renderer vs llama.cpp's built-in matcher vs transformers.

``python -m tools.chat_template_vs_builtin``: fetches SmolLM2 (pinned), reads its
``tokenizer.chat_template``, renders tests/chat_conversations.py with all three (the built-in
matcher through the native backend's ``apply_chat_template``), says which agree with transformers
and times a render of each.
"""

from __future__ import annotations

import time

from llamart import Engine, pinned_models
from llamart import chat_template as ct
from tests.chat_conversations import CONVERSATIONS


def _us(fn, n: int = 2000) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n * 1e6


def main() -> None:
    from transformers.utils.chat_template_utils import (
        _compile_jinja_template,
        render_jinja_template,
    )

    path = pinned_models.fetch("smollm2")
    with Engine("native") as engine:
        engine.load_model(str(path), n_ctx=256)
        src = engine.metadata["tokenizer.chat_template"]
        ours = ct.ChatTemplate(src, name=path.name)
        builtin = engine._backend.apply_chat_template  # the llama.cpp matcher chat() uses today
        for name, conv in CONVERSATIONS.items():
            pairs = [(m["role"], m["content"]) for m in conv]
            ref = render_jinja_template([conv], chat_template=src, add_generation_prompt=True)[0][0]
            print(f"{name:12} llamart == transformers: {ours.render(conv) == ref}; "
                  f"llama.cpp built-in == transformers: {builtin(pairs, True) == ref}")
        conv = CONVERSATIONS["multi-turn"]
        pairs = [(m["role"], m["content"]) for m in conv]
        tf = _compile_jinja_template(src)
        t_ours = _us(lambda: ours.render(conv))
        t_tf = _us(lambda: tf.render(messages=conv, add_generation_prompt=True))
        t_builtin = _us(lambda: builtin(pairs, True))
        print(f"render (multi-turn): llamart {t_ours:.0f} us, transformers {t_tf:.0f} us, "
              f"llama.cpp built-in {t_builtin:.0f} us")
        ct._compile.cache_clear()
        t0 = time.perf_counter()
        ct.ChatTemplate(src)
        print(f"compile (once per template): {(time.perf_counter() - t0) * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
