"""The bounds of one chat-template render (templates come from untrusted files).

Each ``MAX_*`` is a limit whose excess is a ChatTemplateError; a render runs under a
:class:`Budget` (a context variable, so nested and concurrent renders keep their own) that counts
loop iterations, calls and time without threads or signals; the ``check_*`` helpers refuse a
value, format or string operation before it is built too large.
"""

from __future__ import annotations

import contextvars
import re
import time
from collections.abc import Iterable, Mapping
from typing import Any

from jinja2.utils import Namespace

#: Largest template source accepted; real chat templates are under 100 kB.
MAX_SOURCE_CHARS = 1_000_000
#: Deepest nesting of brackets, of block tags (deeper would exhaust the parser's recursion) and
#: of the data a template keeps in a namespace (freeing deeper lists exhausts Pyodide's stack).
MAX_NESTING = 100
#: Wall-clock budget of one render, checked at every loop step, call, operator and filter.
MAX_RENDER_SECONDS = 2.0
#: Total for-loop iterations of one render (real templates use a few hundred).
MAX_LOOP_ITERATIONS = 1_000_000
#: Deepest nesting of macro and recursive-loop calls (stops unbounded recursion early).
MAX_CALL_DEPTH = 64
#: Largest rendered prompt, in characters (~500k tokens).
MAX_OUTPUT_CHARS = 4_000_000
#: Largest value built during a render (string length, or characters plus items of a container).
MAX_VALUE_SIZE = 2_000_000
#: Largest integer built by ``*`` or ``**``, in bits.
MAX_INT_BITS = 65_536
#: Largest input of the text filters that cost microseconds per character (wordwrap, urlize...).
MAX_SLOW_FILTER_CHARS = 100_000
#: Largest ``indent=`` of ``tojson``.
MAX_JSON_INDENT = 64

#: The filters MAX_SLOW_FILTER_CHARS applies to.
SLOW_FILTERS = frozenset({"wordwrap", "urlize", "striptags", "title", "capitalize", "truncate"})
_TICK_EVERY = 64  # the clock is read once per this many counted steps
_FORMAT_NUMBER = re.compile(r"\d{7,}")  # a field width or precision of a million or more


class LimitExceeded(Exception):
    """A render limit was reached (converted to ChatTemplateError with the template line)."""


class Budget:
    """The counters of one render."""

    __slots__ = ("deadline", "ticks", "iterations", "depth")

    def __init__(self, seconds: float = MAX_RENDER_SECONDS):
        self.deadline = time.monotonic() + seconds
        self.ticks = 0
        self.iterations = 0
        self.depth = 0

    def tick(self) -> None:
        self.ticks += 1
        if self.ticks % _TICK_EVERY == 0 and time.monotonic() > self.deadline:
            raise LimitExceeded(f"rendering took longer than {MAX_RENDER_SECONDS:g} s")


budget_var: contextvars.ContextVar[Budget | None] = contextvars.ContextVar(
    "llamart_template_budget", default=None)


def current_budget() -> Budget:
    b = budget_var.get()
    if b is None:  # constant folding at compile time: a fresh budget
        b = Budget()
        budget_var.set(b)
    return b


def _children(v: Any) -> Iterable[Any] | None:
    """The items a container holds (keys and values of a mapping), None for a leaf."""
    if isinstance(v, Mapping):
        return [*v.keys(), *v.values()]
    if isinstance(v, (list, tuple, set, frozenset)):
        return v
    if isinstance(v, Namespace):
        return list(getattr(v, "_Namespace__attrs", {}).values())
    return None


def size_of(value: Any, limit: int = MAX_VALUE_SIZE) -> int:
    """The characters plus items ``str(value)`` would hold about, capped at ``limit + 1``.

    Shared containers are measured once (a list doubled by reference 60 times is measured in
    120 steps, and found too big); a container that holds itself counts as too big.
    """
    if isinstance(value, str):
        return len(value)
    if _children(value) is None:
        return 1
    memo: dict[int, int] = {}
    open_ids: set[int] = set()
    stack = [value]
    while stack:
        v = stack[-1]
        key = id(v)
        if key in memo:
            stack.pop()
            continue
        kids = _children(v) or ()
        pending = [c for c in kids if _children(c) is not None and id(c) not in memo]
        if pending and key not in open_ids:
            open_ids.add(key)
            stack.extend(pending)
            continue
        if pending:  # a child still open: a cycle
            return limit + 1
        total = 1
        for c in kids:
            total += len(c) + 1 if isinstance(c, str) else memo.get(id(c), 1)
            if total > limit:
                return limit + 1
        memo[key] = total
        open_ids.discard(key)
        stack.pop()
    return memo[id(value)]


def too_deep(value: Any, limit: int = MAX_NESTING) -> bool:
    """Whether containers nest deeper than ``limit`` in ``value`` (a cycle counts as too deep).

    Freeing (or printing) a list nested 100,000 deep exhausts the C stack, which kills Pyodide.
    """
    deepest: dict[int, int] = {}
    stack = [(value, 1)]
    while stack:
        v, d = stack.pop()
        kids = _children(v)
        if kids is None or deepest.get(id(v), 0) >= d:
            continue
        if d > limit:
            return True
        deepest[id(v)] = d
        stack.extend((c, d + 1) for c in kids)
    return False


def check_size(value: Any, what: str) -> Any:
    if isinstance(value, (str, list, tuple, dict)) and size_of(value) > MAX_VALUE_SIZE:
        raise LimitExceeded(f"{what} would exceed {MAX_VALUE_SIZE:,} characters/items")
    return value


def check_format(fmt: Any) -> None:
    if isinstance(fmt, str) and _FORMAT_NUMBER.search(fmt):
        raise LimitExceeded("a format width or precision of a million or more")


def check_width(width: Any, base: int, what: str) -> None:
    if isinstance(width, int) and width * max(base, 1) > MAX_VALUE_SIZE:
        raise LimitExceeded(f"{what} would exceed {MAX_VALUE_SIZE:,} characters")


def check_replace(s: Any, old: Any, new: Any, count: Any = -1) -> None:
    if isinstance(s, str) and isinstance(old, str) and isinstance(new, str):
        n = s.count(old) if old else len(s) + 1
        if isinstance(count, int) and count >= 0:
            n = min(n, count)
        if len(s) + n * (len(new) - len(old)) > MAX_VALUE_SIZE:
            raise LimitExceeded(f"replace() would exceed {MAX_VALUE_SIZE:,} characters")


def check_join(items: Any, sep: Any = "") -> None:
    if isinstance(items, (list, tuple)):
        seplen = len(sep) if isinstance(sep, str) else 1
        total = 0
        for item in items:
            total += size_of(item) + seplen
            if total > MAX_VALUE_SIZE:
                raise LimitExceeded(f"join would exceed {MAX_VALUE_SIZE:,} characters")


def precheck_str_method(name: str, s: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    if name in ("center", "ljust", "rjust", "zfill"):
        check_width(args[0] if args else kwargs.get("width"), 1, f"str.{name}()")
    elif name == "expandtabs":
        check_width(args[0] if args else kwargs.get("tabsize", 8), len(s), "str.expandtabs()")
    elif name == "replace":
        check_replace(s, *args[:3])
    elif name == "join":
        check_join(args[0] if args else None, s)
    elif name in ("format", "format_map"):
        check_format(s)
        for a in (*args, *kwargs.values()):
            check_size(a, "a format argument")
