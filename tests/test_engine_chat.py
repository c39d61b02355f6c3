"""The Engine's chat: messages checked and rendered with the model's Jinja template (or
one given), chat / apply_chat_template, streamed chat, the shapes transformers accepts.

Tested against llamart.testing.FakeBackend (pure Python): no numpy, gguf or llama.cpp,
so this file runs unchanged in Pyodide. The fixtures (``fake``, ``fake_files``,
``fake_engine``, ``fake_loaded``) are in tests/conftest.py.
"""

from __future__ import annotations

import os

import pytest

from llamart import (
    Engine,
    EngineStateError,
)
from llamart.errors import ChatTemplateError
from llamart.testing.fake import BOS, EOS, FakeBackend, byte_tokens
from llamart.testing.gguf_writer import CHAT_TEMPLATE, write_model

# ---- chat ----

def test_chat_uses_template_with_special_tokens(fake_loaded: Engine, fake: FakeBackend) -> None:
    fake.script = byte_tokens(b"Hi!") + [EOS]
    reply = fake_loaded.chat([{"role": "system", "content": "be brief"},
                         {"role": "user", "content": "hi"}], max_tokens=10)
    assert reply == "Hi!" and fake_loaded.last_finish_reason == "stop"
    text, add_special, parse_special = [a for n, a in fake.calls if n == "tokenize"][-1]
    assert text == "<s>system: be brief</s><s>user: hi</s><s>assistant: "
    assert parse_special is True
    prompt = [a[0] for n, a in fake.calls if n == "eval_prompt"][-1]
    assert prompt[:2] == [BOS, BOS]  # "<s>" parsed as the special token


@pytest.mark.parametrize("messages, exc, match", [
    ("hi", TypeError, "messages"),
    ([], ValueError, "messages is empty"),
    (["hi"], TypeError, r"messages\[0\]"),
    ([{"role": "user"}], ValueError, r"messages\[0\] has no 'content'"),
    ([{"role": "user", "content": 3}], TypeError, r"messages\[0\]\['content'\]"),
    ([{"role": "", "content": "x"}], ValueError, "role"),
])
def test_chat_messages_validated(fake_loaded: Engine, messages, exc, match) -> None:
    with pytest.raises(exc, match=match):
        fake_loaded.chat(messages)


def test_chat_without_template(fake_files) -> None:
    fake = FakeBackend()
    with Engine(fake) as e:
        e.load_model(write_model(os.path.join(fake_files["dir"], "bare.gguf"), template=None))
        with pytest.raises(ChatTemplateError, match="bare.gguf has no chat template"):
            e.chat([{"role": "user", "content": "hi"}])
        fake.script = byte_tokens(b"k")
        assert e.complete("x", max_tokens=1) == "k"


# ---- chat: streaming, and the template in public ----

def test_chat_stream(fake_loaded: Engine, fake: FakeBackend) -> None:
    from llamart.engine.generation import Generation

    messages = [{"role": "user", "content": "hi"}]
    fake.script = byte_tokens(b"Hi there") + [EOS]
    gen = fake_loaded.chat(messages, max_tokens=20, stream=True)
    assert isinstance(gen, Generation)
    chunks = list(gen)
    assert "".join(chunks) == "Hi there" and len(chunks) == 8
    assert gen.finish_reason == "stop"
    fake.script = byte_tokens(b"Hi there") + [EOS]
    assert fake_loaded.chat(messages, max_tokens=20) == "Hi there"  # the same, not streamed
    prompts = [a[0] for n, a in fake.calls if n == "eval_prompt"]
    assert prompts[-1] == prompts[-2]
    with pytest.raises(TypeError, match="stream"):
        fake_loaded.chat(messages, stream=1)  # type: ignore[call-overload]


def test_apply_chat_template(fake_loaded: Engine, fake: FakeBackend) -> None:
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    assert fake_loaded.apply_chat_template(messages) ==\
        "<s>system: be brief</s><s>user: hi</s><s>assistant: "
    assert fake_loaded.apply_chat_template(messages, add_generation_prompt=False) ==\
        "<s>system: be brief</s><s>user: hi</s>"
    with pytest.raises(ValueError, match=r"messages\[0\] has no 'content'"):
        fake_loaded.apply_chat_template([{"role": "user"}])
    with pytest.raises(TypeError, match="add_generation_prompt"):
        fake_loaded.apply_chat_template(messages, 1)  # type: ignore[arg-type]
    fake.script = byte_tokens(b"abc")
    it = fake_loaded.generate("x", max_tokens=3)
    next(it)
    assert fake_loaded.apply_chat_template(messages).endswith("assistant: ")  # a reading call
    it.close()


def test_apply_chat_template_errors(fake_engine: Engine, fake_files) -> None:
    with pytest.raises(EngineStateError, match="no model"):
        fake_engine.apply_chat_template([{"role": "user", "content": "hi"}])
    bare = write_model(os.path.join(fake_files["dir"], "no_template.gguf"), template=None)
    with Engine(FakeBackend()) as e:
        e.load_model(bare)
        with pytest.raises(ChatTemplateError, match="no_template.gguf has no chat template"):
            e.apply_chat_template([{"role": "user", "content": "hi"}])
        assert e.apply_chat_template([{"role": "user", "content": "hi"}],
                                     chat_template=CHAT_TEMPLATE) == "<s>user: hi</s><s>assistant: "
        e.load_model(bare, chat_template="{{ messages[0].content }}!")
        assert e.chat([{"role": "user", "content": "q"}], max_tokens=1) is not None
        with pytest.raises(ChatTemplateError, match="line 1"):
            e.apply_chat_template([{"role": "user", "content": "hi"}], chat_template="{% if %}")


# ---- issue 22: chat messages in the shapes transformers accepts ----

TOOL_TEMPLATE = ("{% for m in messages %}[{{ m.role }}"
                 "{% if m.content is string %}:{{ m.content }}"
                 "{% elif m.content %}:{% for p in m.content %}{{ p.text }}{% endfor %}{% endif %}"
                 "{% for c in m.tool_calls or [] %} call {{ c.function.name }}"
                 "({{ c.function.arguments | tojson }}){% endfor %}"
                 "{% if m.tool_call_id %} id={{ m.tool_call_id }}{% endif %}]{% endfor %}")


def test_chat_accepts_tool_calls_tool_results_and_content_parts(fake_engine: Engine,
                                                                 fake: FakeBackend,
                                                                 fake_files) -> None:
    fake_loaded = fake_engine
    fake_loaded.load_model(fake_files["model"], n_ctx=256)
    messages = [
        {"role": "user", "content": [{"type": "text", "text": "weather "},
                                     {"type": "text", "text": "in Paris?"}]},
        {"role": "assistant", "content": None, "tool_calls": [
            {"type": "function", "function": {"name": "weather",
                                              "arguments": {"city": "Paris"}}}]},
        {"role": "tool", "content": "22C", "tool_call_id": "1"},
    ]
    prompt = fake_loaded.apply_chat_template(messages, chat_template=TOOL_TEMPLATE)
    assert prompt == ('[user:weather in Paris?][assistant call weather({"city": "Paris"})]'
                      '[tool:22C id=1]')
    fake.script = byte_tokens(b"sunny") + [EOS]
    assert fake_loaded.chat(messages, chat_template=TOOL_TEMPLATE) == "sunny"
    text = [a[0] for n, a in fake.calls if n == "tokenize"][-1]
    assert text == prompt
    with pytest.raises(TypeError, match=r"messages\[0\]\['content'\]\[0\]"):
        fake_loaded.chat([{"role": "user", "content": ["hi"]}])


# ---- issue 22: errors name the method called ----

def test_a_bad_keyword_to_achat_names_achat(fake_loaded: Engine) -> None:
    msgs = [{"role": "user", "content": "hi"}]
    with pytest.raises(TypeError, match=r"^achat\(\) got an unexpected keyword argument 'top_q'"):
        fake_loaded.achat(msgs, top_q=0.5)
    with pytest.raises(TypeError, match=r"^chat\(\) got an unexpected keyword argument 'top_q'"):
        fake_loaded.chat(msgs, top_q=0.5)
