"""llamart.chat.template: transformers' semantics on real templates, and bounded rendering."""

from __future__ import annotations

import os
import time

import pytest

pytest.importorskip("jinja2")  # Pyodide: the runner installs tools/pyodide_wheels.py's wheels

from llamart.chat import limits  # noqa: E402
from llamart.chat import template as ct  # noqa: E402
from llamart.chat.template import ChatTemplate  # noqa: E402
from llamart.errors import ChatTemplateError, LlamartError  # noqa: E402
from tools.chat_conversations import BOS, CONVERSATIONS, EOS, llama_cpp_templates  # noqa: E402

CHATML = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n"
          "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
USER = [{"role": "user", "content": "hi"}]


def test_chatml_by_hand():
    t = ChatTemplate(CHATML)
    assert t.render(USER) == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert t.render(USER, add_generation_prompt=False) == "<|im_start|>user\nhi<|im_end|>\n"


def test_tokens_kwargs_and_transformers_conventions():
    src = ("{{ bos_token }}{{ tools is none }}{{ documents is none }}|{{ enable_thinking }}|"
           "{{ date_string }}|{{ messages[0] | tojson }}|{{ {'b': 1, 'a': [1]} | tojson(indent=1,"
           " sort_keys=true) }}|{{ eos_token }}")
    out = ChatTemplate(src, bos_token="<s>", eos_token="</s>").render(
        [{"role": "user", "content": "é", "name": None, "reasoning": "r"}],
        enable_thinking=False, date_string="26 Jul 2024")
    # None keys dropped, reasoning aliased to thinking/reasoning_content, no ASCII escaping
    assert out == ('<s>TrueTrue|False|26 Jul 2024|{"thinking": "r", "role": "user", "content": '
                   '"é", "reasoning": "r", "reasoning_content": "r"}|{\n "a": [\n  1\n ],\n '
                   '"b": 1\n}|</s>')
    assert ChatTemplate("{{ bos_token }}", bos_token="<s>").render([], bos_token="B") == "B"
    assert ChatTemplate("{% generation %}{{ 1 + 1 }}{% endgeneration %}").render([]) == "2"
    year = time.strftime("%Y")
    assert ChatTemplate("{{ strftime_now('%Y') }}").render([]) == year
    assert ChatTemplate("{% for x in range(9) %}{% if x > 2 %}{% break %}{% endif %}{{ x }}"
                        "{% endfor %}").render([]) == "012"


def test_errors_name_template_and_line():
    src = "a\n{% if messages[0].role == 'system' %}\n{{ raise_exception('No system role') }}" \
          "\n{% endif %}"
    t = ChatTemplate(src, name="model.gguf")
    with pytest.raises(ChatTemplateError) as ei:
        t.render([{"role": "system", "content": "x"}])
    e = ei.value
    assert isinstance(e, LlamartError) and e.template == "model.gguf" and e.lineno == 3
    assert str(e) == ("chat template of model.gguf, line 3: rendering failed: the template "
                      "raised: No system role")
    assert t.render(USER) == "a\n"  # usable after an error
    with pytest.raises(ChatTemplateError, match=r"of m\.gguf, line 2: compiling failed") as ei:
        ChatTemplate("ok\n{% for %}", name="m.gguf")
    assert ei.value.lineno == 2
    with pytest.raises(ChatTemplateError, match=r"line 4: rendering failed: .*undefined"):
        ChatTemplate("\n\n\n{{ nope() }}").render([])
    with pytest.raises(TypeError, match="chat messages must be dicts"):
        ChatTemplate(CHATML).render(["hi"])  # type: ignore[list-item]


def test_compiled_once():
    ct._compile.cache_clear()
    ChatTemplate(CHATML)
    ChatTemplate(CHATML, name="other")
    assert ct._compile.cache_info().hits == 1


# ---- against transformers, on the real templates llama.cpp ships ----

TEMPLATES = llama_cpp_templates()


@pytest.mark.skipif(not TEMPLATES, reason="the pinned llama.cpp source (.cache) is not here")
def test_real_templates_identical_to_transformers():
    pytest.importorskip("transformers")
    from transformers.utils.chat_template_utils import render_jinja_template

    assert len(TEMPLATES) >= 70
    same = refused = 0
    refused_by: dict[str, str] = {}
    for path in TEMPLATES:
        with open(path, encoding="utf-8") as f:
            src = f.read()
        name = os.path.basename(path)
        ours = ChatTemplate(src, bos_token=BOS, eos_token=EOS, name=name)
        for conv_name, conv in CONVERSATIONS.items():
            for agp in (True, False):
                try:
                    ref = render_jinja_template([conv], chat_template=src,
                                                add_generation_prompt=agp, bos_token=BOS,
                                                eos_token=EOS)[0][0]
                except Exception as e:  # transformers refuses: so must we
                    refused += 1
                    refused_by[f"{name} {conv_name}"] = str(e)[:80]
                    with pytest.raises(ChatTemplateError):
                        ours.render(conv, add_generation_prompt=agp)
                    continue
                assert ours.render(conv, add_generation_prompt=agp) == ref, \
                    (name, conv_name, agp)
                same += 1
    print(f"\n{same} renders byte-identical to transformers; {refused} refused by both "
          f"(e.g. {sorted(refused_by.items())[:3]})")
    assert same >= 380 and same + refused == len(TEMPLATES) * len(CONVERSATIONS) * 2


# ---- bounds: hostile templates fail clearly and fast ----

HOSTILE = {
    "loop 10^10": ("{% for i in range(100000) %}{% for j in range(100000) %}{{ '' }}{% endfor %}"
                   "{% endfor %}", "loop iterations"),
    "10 GB string": ("{{ 'a' * 10 ** 10 }}", "would exceed"),
    "doubling ~": ("{% set ns = namespace(s='a') %}{% for i in range(40) %}{% set ns.s = ns.s ~ "
                   "ns.s %}{% endfor %}{{ ns.s }}", "would exceed"),
    "doubling list": ("{% set ns = namespace(s=[1]) %}{% for i in range(60) %}{% set ns.s = "
                      "[ns.s, ns.s] %}{% endfor %}{{ ns.s }}", "output value larger"),
    "doubling tojson": ("{% set ns = namespace(s=[1]) %}{% for i in range(60) %}{% set ns.s = "
                        "[ns.s, ns.s] %}{% endfor %}{{ ns.s|tojson }}", "would exceed"),
    "center": ("{{ 'a'|center(10000000000) }}", "would exceed"),
    "str.ljust": ("{{ 'a'.ljust(10 ** 9) }}", "would exceed"),
    "format width": ("{{ '{:>10000000000}'.format('a') }}", "format width"),
    "percent width": ("{{ '%0999999999d' % 1 }}", "format width"),
    "replace": ("{% set s = 'a' * 100000 %}{{ s.replace('', s) }}", "would exceed"),
    "big int": ("{{ 2 ** 100000000 }}", "bits"),
    "squaring": ("{% set ns = namespace(x=3) %}{% for i in range(100) %}{% set ns.x = ns.x * "
                 "ns.x %}{% endfor %}", "bits"),
    "recursion": ("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", "nested deeper"),
    "recursive loop": ("{% for x in [1] recursive %}{{ loop([1]) }}{% endfor %}", "nested deeper"),
    "deep nesting": ("{% set ns = namespace(s=[]) %}{% for i in range(1000) %}{% for j in "
                     "range(900) %}{% set ns.s = [ns.s] %}{% endfor %}{% endfor %}{{ ns.s }}",
                     "nested deeper than 100 levels"),
    "slow": ("{% for i in range(99999) %}{% for j in range(99999) %}{% if i > j %}{% set ns = "
             "namespace(a=[i, j]|sort) %}{% endif %}{% endfor %}{% endfor %}", "longer than|loop"),
    "5000 parens": ("{{ " + "(" * 5000 + "1" + ")" * 5000 + " }}", "nested deeper than"),
    "5000 ifs": ("{% if true %}" * 5000 + "x" + "{% endif %}" * 5000, "nested deeper than"),
    "mro": ("{{ ''.__class__.__mro__[1].__subclasses__() }}", "sandbox"),
    "globals": ("{{ cycler.__init__.__globals__.os.system('echo pwned') }}", "sandbox"),
    "getitem dunder": ("{{ ''['__class__'] }}", "sandbox"),
    "format dunder": ("{{ '{0.__class__}'.format('') }}", "sandbox"),
    "namespace dunder": ("{% set ns = namespace() %}{% set ns.__class__ = 1 %}", "sandbox"),
    "self namespace": ("{% set ns = namespace() %}{% set ns.a = ns %}{{ ns.a }}", "larger"),
    "wordwrap": ("{{ ('a ' * 1000000)|wordwrap(1) }}", "wordwrap of more"),
    "lipsum": ("{{ lipsum(100000000) }}", "undefined"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_template_fails_fast(name):
    src, reason = HOSTILE[name]
    t0 = time.perf_counter()
    with pytest.raises(ChatTemplateError, match=reason) as ei:
        ChatTemplate(src, name="evil.gguf").render(USER)
    assert time.perf_counter() - t0 < limits.MAX_RENDER_SECONDS + 1.0
    assert str(ei.value).startswith("chat template of evil.gguf")


def test_output_cap():
    with pytest.raises(ChatTemplateError, match="the prompt would exceed"):
        ChatTemplate("{% for i in range(10) %}{{ messages[0].content }}{% endfor %}").render(
            [{"role": "user", "content": "x" * (limits.MAX_OUTPUT_CHARS // 5)}])


@pytest.mark.skipif(not TEMPLATES, reason="the pinned llama.cpp source (.cache) is not here")
def test_fuzz_subset(capsys):
    from tools.fuzz_templates import main as fuzz_main

    assert fuzz_main(["-n", "120", "--seed", "7"]) == 0  # no crash, no case over the budget
    assert "failures 0" in capsys.readouterr().out
