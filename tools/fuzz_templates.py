"""Fuzz the chat-template renderer with mutated real templates (llama.cpp's models/templates).

``python -m tools.fuzz_templates [-n CASES] [--seed S]``: each case mutates one real template
(cuts, duplicates, swaps spans; splices in Jinja fragments, hostile ones included) and renders
it on a conversation. Every case must render or raise ChatTemplateError, within the render
budget; anything else (another exception, a case slower than the budget + 1 s) is a failure,
printed with the case so it can be replayed. Exit status 1 on any failure.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections import Counter

from llamart.chat import limits
from llamart.chat.template import ChatTemplate
from llamart.errors import ChatTemplateError
from tools.chat_conversations import BOS, CONVERSATIONS, EOS, llama_cpp_templates

FRAGMENTS = [
    "{{", "}}", "{%", "%}", "{#", "#}", "(", ")", "[", "]", "{", "}", "|", "~", "+", "*", "**",
    " * 100000000 ", " ** 99999 ", "{% for i in range(100000) %}", "{% endfor %}", "{% if x %}",
    "{% endif %}", "{% else %}", "{% set ns = namespace(a='x') %}", "{% set ns.a = ns.a ~ ns.a %}",
    "{{ loop(messages) }}", "{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}", "__class__",
    ".__init__.__globals__", "|tojson(indent=999999999)", "|center(999999999)", "|join",
    "|indent(99999999)", "'%999999999s' % 1", "raise_exception('x')", "strftime_now('%Y')",
    "{% break %}", "{% continue %}", "messages[0]", "message['content']", "loop.index0",
    "{% generation %}", "{% endgeneration %}", "'\\u0000'", "\"", "'", "\n", "-%}", "{%-",
    "{{ ns.a * 1000000 }}", "{% for m in messages %}{{ m.content * 9999999 }}{% endfor %}",
    "{% for m in messages recursive %}{{ loop(messages) }}{% endfor %}",
    "{% set ns = namespace(a=[1]) %}{% for i in range(99) %}{% set ns.a = [ns.a, ns.a] %}"
    "{% endfor %}{{ ns.a }}", "{{ messages|tojson }}", "{{ cycler.__init__ }}",
    "{{ range(99999)|list|join }}", "add_generation_prompt", "none",
]


def mutate(rng: random.Random, src: str) -> str:
    """One to three random edits of ``src`` (often at a tag boundary, so more cases compile)."""
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        n = len(src)
        i = rng.randrange(n + 1)
        if rng.random() < 0.5:  # just after a tag: whole statements spliced in still parse
            k = max(src.rfind("%}", 0, i), src.rfind("}}", 0, i))
            i = k + 2 if k >= 0 else i
        j = min(n, i + rng.randint(0, 40))
        op = rng.randrange(5)
        if op == 0:
            src = src[:i] + src[j:]
        elif op == 1:
            src = src[:j] + src[i:j] * rng.randint(1, 3) + src[j:]
        elif op == 2:
            src = src[:i] + rng.choice(FRAGMENTS) + src[i:]
        elif op == 3 and n:
            k = rng.randrange(n)
            src = src[:i] + src[k:k + 30] + src[i:]
        else:
            src = src[:i] + rng.choice(FRAGMENTS) + src[j:]
    return src


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", "--cases", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    sources = []
    for path in llama_cpp_templates():
        with open(path, encoding="utf-8") as f:
            sources.append(f.read())
    if not sources:
        print("fuzz_templates: no templates (the pinned llama.cpp source is not in .cache)")
        return 2
    rng = random.Random(args.seed)
    convs = list(CONVERSATIONS.values())
    outcome: Counter[str] = Counter()
    failures = 0
    slowest = 0.0
    started = time.monotonic()
    for case in range(args.cases):
        src = mutate(rng, rng.choice(sources))
        conv = rng.choice(convs)
        t0 = time.perf_counter()
        try:
            ChatTemplate(src, bos_token=BOS, eos_token=EOS, name=f"case{case}").render(
                conv, add_generation_prompt=rng.random() < 0.5)
            outcome["rendered"] += 1
        except ChatTemplateError as e:
            outcome["compile error" if "compiling failed" in str(e) else "render error"] += 1
        except Exception as e:  # a crash: not a clear error
            failures += 1
            print(f"case {case} (seed {args.seed}): {type(e).__name__}: {e}\n{src!r}")
        took = time.perf_counter() - t0
        slowest = max(slowest, took)
        if took > limits.MAX_RENDER_SECONDS + 1.0:
            failures += 1
            print(f"case {case} (seed {args.seed}): took {took:.2f} s\n{src!r}")
    wall = time.monotonic() - started
    print(f"fuzz_templates: {args.cases} cases from {len(sources)} templates in {wall:.1f} s: "
          f"{dict(outcome)}; slowest {slowest:.3f} s; failures {failures}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
