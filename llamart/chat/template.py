"""Chat templates (a model's Jinja ``tokenizer.chat_template``) rendered as transformers does.

The semantics are Hugging Face transformers' ``apply_chat_template`` (``render_jinja_template``):
jinja2's ``ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)`` with loop
controls and the ``{% generation %}`` tag, ``tojson`` as ``json.dumps(ensure_ascii=False, ...)``,
``raise_exception``, ``strftime_now``, transformers' ``dict`` and ``namespace``; messages keys that
are None are dropped, reasoning fields aliased, and extra keyword arguments (``tools``,
``documents``, ``enable_thinking``, ``date_string``...) reach the template as variables.

Templates come from untrusted files, so rendering is bounded in time and memory without threads or
signals (it runs the same in Pyodide): attribute access is restricted beyond jinja's sandbox, every
loop iteration, call, operator and filter is counted against a deadline, values and output are
capped in size before they are built, nesting is checked before parsing, and every failure is a
:class:`~llamart.errors.ChatTemplateError` naming the template and line.
"""

from __future__ import annotations

import contextvars
import json
import re
import time
import traceback
import types
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from functools import lru_cache
from typing import Any

import jinja2
import jinja2.ext
from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame, optimizeconst
from jinja2.runtime import LoopContext, Macro
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Cycler, Joiner, Namespace

from ..errors import ChatTemplateError

__all__ = ["ChatTemplate", "ChatTemplateError", "render_chat_template"]

# ---- limits (one render; each exceeded limit is a ChatTemplateError) ----
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

_SLOW_FILTERS = frozenset({"wordwrap", "urlize", "striptags", "title", "capitalize", "truncate"})
_TICK_EVERY = 64  # the clock is read once per this many counted steps
_FORMAT_NUMBER = re.compile(r"\d{7,}")  # a field width or precision of a million or more


class _LimitExceeded(Exception):
    """A render limit was reached (converted to ChatTemplateError with the template line)."""


class _TemplateRaised(jinja2.TemplateError):
    """``raise_exception(message)`` from the template."""


class _Budget:
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
            raise _LimitExceeded(f"rendering took longer than {MAX_RENDER_SECONDS:g} s")


_budget: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar("llamart_template_budget",
                                                                        default=None)


def _current() -> _Budget:
    b = _budget.get()
    if b is None:  # constant folding at compile time: a fresh budget
        b = _Budget()
        _budget.set(b)
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


def _size(value: Any, limit: int = MAX_VALUE_SIZE) -> int:
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


def _too_deep(value: Any, limit: int = MAX_NESTING) -> bool:
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


def _check_size(value: Any, what: str) -> Any:
    if isinstance(value, (str, list, tuple, dict)) and _size(value) > MAX_VALUE_SIZE:
        raise _LimitExceeded(f"{what} would exceed {MAX_VALUE_SIZE:,} characters/items")
    return value


def _check_format(fmt: Any) -> None:
    if isinstance(fmt, str) and _FORMAT_NUMBER.search(fmt):
        raise _LimitExceeded("a format width or precision of a million or more")


def _check_width(width: Any, base: int, what: str) -> None:
    if isinstance(width, int) and width * max(base, 1) > MAX_VALUE_SIZE:
        raise _LimitExceeded(f"{what} would exceed {MAX_VALUE_SIZE:,} characters")


def _check_replace(s: Any, old: Any, new: Any, count: Any = -1) -> None:
    if isinstance(s, str) and isinstance(old, str) and isinstance(new, str):
        n = s.count(old) if old else len(s) + 1
        if isinstance(count, int) and count >= 0:
            n = min(n, count)
        if len(s) + n * (len(new) - len(old)) > MAX_VALUE_SIZE:
            raise _LimitExceeded(f"replace() would exceed {MAX_VALUE_SIZE:,} characters")


def _check_join(items: Any, sep: Any = "") -> None:
    if isinstance(items, (list, tuple)):
        seplen = len(sep) if isinstance(sep, str) else 1
        total = 0
        for item in items:
            total += _size(item) + seplen
            if total > MAX_VALUE_SIZE:
                raise _LimitExceeded(f"join would exceed {MAX_VALUE_SIZE:,} characters")


def _precheck_str_method(name: str, s: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    if name in ("center", "ljust", "rjust", "zfill"):
        _check_width(args[0] if args else kwargs.get("width"), 1, f"str.{name}()")
    elif name == "expandtabs":
        _check_width(args[0] if args else kwargs.get("tabsize", 8), len(s), "str.expandtabs()")
    elif name == "replace":
        _check_replace(s, *args[:3])
    elif name == "join":
        _check_join(args[0] if args else None, s)
    elif name in ("format", "format_map"):
        _check_format(s)
        for a in (*args, *kwargs.values()):
            _check_size(a, "a format argument")


# ---- what a template may reach ----

_STR_METHODS = frozenset(
    "capitalize casefold center count endswith expandtabs find format format_map index isalnum "
    "isalpha isascii isdecimal isdigit isidentifier islower isnumeric isprintable isspace istitle "
    "isupper join ljust lower lstrip partition removeprefix removesuffix replace rfind rindex "
    "rjust rpartition rsplit rstrip split splitlines startswith strip swapcase title upper "
    "zfill".split())
_SAFE_METHODS: dict[type, frozenset[str]] = {
    str: _STR_METHODS,
    dict: frozenset({"get", "items", "keys", "values"}),
    list: frozenset({"count", "index"}),
    tuple: frozenset({"count", "index"}),
}
_OPAQUE = (types.FunctionType, types.BuiltinFunctionType, types.MethodType, types.ModuleType,
           type, types.CodeType, types.FrameType, types.GeneratorType, types.TracebackType)
_ALLOWED_OBJECTS = (str, int, float, bool, type(None), list, tuple, dict, Namespace, LoopContext,
                    Cycler, Joiner, Macro, jinja2.Undefined)


class _TemplateDict:
    """transformers' ``dict`` global: calling it and ``fromkeys`` only."""

    def __call__(self, *args: Any, **kwargs: Any) -> dict[Any, Any]:
        return dict(*args, **kwargs)

    def fromkeys(self, *args: Any, **kwargs: Any) -> dict[Any, Any]:
        return dict.fromkeys(*args, **kwargs)


class _TemplateNamespace(Namespace):
    """transformers' ``namespace``: no underscore-prefixed attributes."""

    def __init__(*args: Any, **kwargs: Any) -> None:  # jinja's signature trick (self in args)
        self, args = args[0], args[1:]
        attrs = dict(*args, **kwargs)
        for name in attrs:
            _TemplateNamespace._check_name(name)
        Namespace.__init__(self, attrs)

    def __setitem__(self, name: str, value: Any) -> None:
        _TemplateNamespace._check_name(name)
        if _too_deep(value):  # loops can nest values only through a namespace
            raise _LimitExceeded(f"a value nested deeper than {MAX_NESTING} levels")
        Namespace.__setitem__(self, name, value)

    @staticmethod
    def _check_name(name: Any) -> None:
        if isinstance(name, str) and name.startswith("_"):
            raise jinja2.exceptions.SecurityError(
                f"chat templates cannot store underscore-prefixed attributes on a namespace "
                f"({name!r})")


class _GenerationTag(jinja2.ext.Extension):
    """transformers' ``{% generation %}...{% endgeneration %}``: renders its body (in a scope)."""

    tags = {"generation"}

    def parse(self, parser: Any) -> nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return nodes.Scope(body, lineno=lineno)


class _BoundedCodeGenerator(CodeGenerator):
    """``~`` goes through the environment's bounded concatenation."""

    @optimizeconst
    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.bounded_concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


def _bounded_join(parts: Iterable[Any]) -> str:
    """The environment's ``concat`` (block set, macro bodies, filter and call blocks), capped."""
    out: list[str] = []
    total = 0
    for p in parts:
        total += len(p)
        if total > MAX_VALUE_SIZE:
            raise _LimitExceeded(f"a captured block would exceed {MAX_VALUE_SIZE:,} characters")
        out.append(p)
    return "".join(out)


def _tojson(x: Any, ensure_ascii: bool = False, indent: Any = None, separators: Any = None,
            sort_keys: bool = False) -> str:
    """transformers' ``tojson``: json.dumps without HTML escaping, with its options."""
    if isinstance(indent, int) and indent > MAX_JSON_INDENT or (
            isinstance(indent, str) and len(indent) > MAX_JSON_INDENT):
        raise _LimitExceeded(f"tojson indent larger than {MAX_JSON_INDENT}")
    if isinstance(separators, (list, tuple)):
        for s in separators:
            _check_size(s, "a tojson separator")
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


def _raise_exception(message: Any) -> None:
    raise _TemplateRaised(str(message))


def _strftime_now(format: str) -> str:
    _check_format(format)
    return datetime.now().strftime(format)


def _wrap_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """A filter whose inputs are size-checked (some are pre-checked) and result capped."""

    def bounded(*args: Any, **kwargs: Any) -> Any:
        _current().tick()
        # pass_context/pass_eval_context filters get the context first: find the value
        value_at = 1 if args and isinstance(args[0], (jinja2.runtime.Context, nodes.EvalContext,
                                                      jinja2.Environment)) else 0
        rest = args[value_at + 1:]
        if len(args) > value_at:
            _check_size(args[value_at], f"the input of |{name}")
            value = args[value_at]
            if name == "center":
                _check_width(rest[0] if rest else kwargs.get("width", 80), 1, "|center")
            elif name == "indent":
                width = rest[0] if rest else kwargs.get("width", 4)
                lines = value.count("\n") + 1 if isinstance(value, str) else 1
                if isinstance(width, str):
                    _check_width(len(width), lines, "|indent")
                else:
                    _check_width(width, lines, "|indent")
            elif name == "format":
                _check_format(value)
                for a in (*rest, *kwargs.values()):
                    _check_size(a, "a format argument")
            elif name == "replace":
                _check_replace(value, *rest[:3])
            elif name in _SLOW_FILTERS and isinstance(value, str) \
                    and len(value) > MAX_SLOW_FILTER_CHARS:
                raise _LimitExceeded(f"|{name} of more than {MAX_SLOW_FILTER_CHARS:,} characters")
            elif name == "join":
                _check_join(list(value) if isinstance(value, (list, tuple)) else value,
                            rest[0] if rest else kwargs.get("d", ""))
        return _check_size(func(*args, **kwargs), f"the result of |{name}")

    for attr in ("jinja_pass_arg",):
        if hasattr(func, attr):
            setattr(bounded, attr, getattr(func, attr))
    return bounded


def _bounded_iter(iterable: Any) -> Iterator[Any]:
    """A for-loop's iterable, counted against the loop and time budgets."""
    b = _current()
    for item in iterable:
        b.iterations += 1
        if b.iterations > MAX_LOOP_ITERATIONS:
            raise _LimitExceeded(f"more than {MAX_LOOP_ITERATIONS:,} loop iterations")
        b.tick()
        yield item


class _BoundedEnvironment(ImmutableSandboxedEnvironment):
    """transformers' chat-template environment with llamart's bounds."""

    code_generator_class = _BoundedCodeGenerator
    intercepted_binops = frozenset({"*", "**", "+", "%"})
    concat = staticmethod(_bounded_join)  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__(trim_blocks=True, lstrip_blocks=True, finalize=self._finalize,
                         extensions=[_GenerationTag, jinja2.ext.loopcontrols])
        self.filters["tojson"] = _tojson
        self.filters = {k: _wrap_filter(k, f) for k, f in self.filters.items()}
        self.globals.pop("lipsum", None)  # unbounded text generator, used by no chat template
        self.globals["raise_exception"] = _raise_exception
        self.globals["strftime_now"] = _strftime_now
        self.globals["dict"] = _TemplateDict()
        self.globals["namespace"] = _TemplateNamespace
        self.bounded_iter = _bounded_iter
        self.bounded_concat = self._bounded_concat

    # -- attribute access --
    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if not super().is_safe_attribute(obj, attr, value) or attr.startswith("_"):
            return False
        if isinstance(obj, _OPAQUE) or not isinstance(obj, _ALLOWED_OBJECTS + (_TemplateDict,)):
            return False
        for base, methods in _SAFE_METHODS.items():
            if isinstance(obj, base) and callable(value):
                return attr in methods
        return True

    def unsafe_undefined(self, obj: Any, attribute: str) -> jinja2.Undefined:
        raise jinja2.exceptions.SecurityError(
            f"access to attribute {attribute!r} of a {type(obj).__name__!r} object is not allowed")

    # -- calls, operators, output --
    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        b = _current()
        b.tick()
        method = getattr(__obj, "__wrapped__", __obj)  # the sandbox wraps str.format
        owner = getattr(method, "__self__", None)
        if isinstance(owner, str) and isinstance(getattr(method, "__name__", None), str):
            _precheck_str_method(method.__name__, owner, args, kwargs)
        b.depth += 1
        try:
            if b.depth > MAX_CALL_DEPTH:
                raise _LimitExceeded(f"calls nested deeper than {MAX_CALL_DEPTH} "
                                     f"(unbounded recursion?)")
            rv = super().call(__context, __obj, *args, **kwargs)
        finally:
            b.depth -= 1
        return _check_size(rv, "a call's result")

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "+" and type(left) is str and type(right) is str:  # the common case
            if len(left) + len(right) > MAX_VALUE_SIZE:
                raise _LimitExceeded(f"'+' would exceed {MAX_VALUE_SIZE:,} characters/items")
            return left + right
        _current().tick()
        if operator == "*":
            if isinstance(left, int) and isinstance(right, int):
                if left.bit_length() + right.bit_length() > MAX_INT_BITS:
                    raise _LimitExceeded(f"an integer larger than {MAX_INT_BITS} bits")
            else:
                seq, n = (right, left) if isinstance(left, int) else (left, right)
                if isinstance(n, int) and isinstance(seq, (str, list, tuple)) \
                        and _size(seq) * max(n, 0) > MAX_VALUE_SIZE:
                    raise _LimitExceeded(f"'*' would exceed {MAX_VALUE_SIZE:,} characters/items")
        elif operator == "**":
            if isinstance(left, int) and isinstance(right, int) and abs(left) > 1 \
                    and right * left.bit_length() > MAX_INT_BITS:
                raise _LimitExceeded(f"an integer larger than {MAX_INT_BITS} bits")
        elif operator == "+":
            if isinstance(left, (str, list, tuple)) and isinstance(right, (str, list, tuple)) \
                    and _size(left) + _size(right) > MAX_VALUE_SIZE:
                raise _LimitExceeded(f"'+' would exceed {MAX_VALUE_SIZE:,} characters/items")
        elif operator == "%" and isinstance(left, str):
            _check_format(left)
            _check_size(right, "a '%' argument")
        return super().call_binop(context, operator, left, right)

    @staticmethod
    def _bounded_concat(parts: Sequence[Any]) -> str:
        _current().tick()
        total = 0
        for p in parts:
            total += _size(p)
            if total > MAX_VALUE_SIZE:
                raise _LimitExceeded(f"'~' would exceed {MAX_VALUE_SIZE:,} characters")
        return "".join(p if isinstance(p, str) else str(p) for p in parts)

    @staticmethod
    def _finalize(value: Any) -> Any:
        if not isinstance(value, str) and _size(value, MAX_OUTPUT_CHARS) > MAX_OUTPUT_CHARS:
            raise _LimitExceeded(f"an output value larger than {MAX_OUTPUT_CHARS:,} characters")
        return value

    # -- parsing --
    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        _check_nesting(self, source, name, filename)
        tree = super()._parse(source, name, filename)
        for loop in tree.find_all(nodes.For):
            loop.iter = nodes.Call(nodes.EnvironmentAttribute("bounded_iter"), [loop.iter], [],
                                   None, None, lineno=loop.iter.lineno)
        return tree


_OPENERS = frozenset({"if", "for", "macro", "call", "filter", "with", "block", "generation",
                      "autoescape"})


def _check_nesting(env: jinja2.Environment, source: str, name: str | None,
                   filename: str | None) -> None:
    """Refuse nesting deeper than MAX_NESTING before the (recursive) parser sees it."""
    brackets = blocks = 0
    after_block_begin = False
    for lineno, kind, value in env.lex(source, name, filename):
        if kind == "whitespace":
            continue
        if kind == "operator":
            if value in "([{":
                brackets += 1
                if brackets > MAX_NESTING:
                    raise jinja2.TemplateSyntaxError(
                        f"brackets nested deeper than {MAX_NESTING}", lineno, name, filename)
            elif value in ")]}":
                brackets -= 1
        elif after_block_begin and kind == "name":
            if value in _OPENERS:
                blocks += 1
                if blocks > MAX_NESTING:
                    raise jinja2.TemplateSyntaxError(
                        f"blocks nested deeper than {MAX_NESTING}", lineno, name, filename)
            elif value.startswith("end") and value[3:] in _OPENERS:
                blocks -= 1
        after_block_begin = kind == "block_begin"


_ENV: _BoundedEnvironment | None = None


def _environment() -> _BoundedEnvironment:
    global _ENV
    if _ENV is None:
        _ENV = _BoundedEnvironment()
    return _ENV


_TEMPLATE_FILE = "<template>"


def _template_line(exc: BaseException) -> int | None:
    """The template line an error was raised at (jinja rewrites tracebacks to template lines)."""
    lineno = getattr(exc, "lineno", None)
    if isinstance(lineno, int):
        return lineno
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename == _TEMPLATE_FILE:
            line = frame.lineno
    return line


def _error(name: str, exc: BaseException, stage: str) -> ChatTemplateError:
    lineno = _template_line(exc)
    if isinstance(exc, (_TemplateRaised, _LimitExceeded, jinja2.TemplateError)):
        reason = str(exc) or type(exc).__name__
        if isinstance(exc, _TemplateRaised):
            reason = f"the template raised: {reason}"
        elif isinstance(exc, jinja2.exceptions.SecurityError):
            reason = f"refused by the sandbox: {reason}"
    elif isinstance(exc, RecursionError):
        reason = "nested too deeply (recursion limit)"
    elif isinstance(exc, MemoryError):
        reason = "out of memory"
    else:
        reason = f"{type(exc).__name__}: {exc}"
    where = f", line {lineno}" if lineno else ""
    return ChatTemplateError(f"chat template of {name}{where}: {stage} failed: {reason}",
                             template=name, lineno=lineno, reason=reason)


@lru_cache(maxsize=32)
def _compile(source: str) -> jinja2.Template:
    """The compiled template (cached by source); errors propagate (the caller names them)."""
    env = _environment()
    token = _budget.set(_Budget())
    try:
        code = env.compile(source, filename=_TEMPLATE_FILE)
        return env.template_class.from_code(env, code, env.make_globals(None), None)
    finally:
        _budget.reset(token)


_REASONING_FIELDS = ("reasoning_content", "thinking", "reasoning")


def _plain(value: Any, depth: int = 0) -> Any:
    """transformers' ``_plain_template_data``: only plain JSON-like data reaches the template."""
    if depth > MAX_NESTING:
        raise ValueError(f"chat template data (messages, kwargs) nested deeper than {MAX_NESTING}")
    if value is None or type(value) in (str, int, float, bool):
        return value
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int.__int__(value)
    if isinstance(value, float):
        return float.__float__(value)
    if isinstance(value, Mapping):
        return {_plain(k, depth + 1): _plain(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v, depth + 1) for v in value]
    if isinstance(value, tuple):
        return tuple(_plain(v, depth + 1) for v in value)
    return f"<{type(value).__name__}>"


def _messages(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Messages as transformers passes them: None values dropped, reasoning fields aliased."""
    out = []
    for m in messages:
        if not isinstance(m, Mapping):
            raise TypeError(f"chat messages must be dicts, got {type(m).__name__}")
        msg = _plain({k: v for k, v in m.items() if v is not None})
        reasoning = next((msg[k] for k in _REASONING_FIELDS if msg.get(k) is not None), None)
        if reasoning is not None:
            msg = {"thinking": reasoning, **msg, "reasoning_content": reasoning}
        out.append(msg)
    return out


class ChatTemplate:
    """A compiled chat template; :meth:`render` formats a conversation into a prompt.

    ``name`` (the model's file name, say) appears in every error. Compiling is cached by source.
    Raises ChatTemplateError when the template does not compile.
    """

    def __init__(self, source: str, *, bos_token: str = "", eos_token: str = "",
                 name: str = "<template>"):
        if not isinstance(source, str):
            raise TypeError(f"a chat template is a string, got {type(source).__name__}")
        self.source = source
        self.name = name
        self.bos_token = bos_token
        self.eos_token = eos_token
        if len(source) > MAX_SOURCE_CHARS:
            raise ChatTemplateError(f"chat template of {name}: larger than {MAX_SOURCE_CHARS:,} "
                                    f"characters", template=name, reason="template too large")
        try:
            self._template = _compile(source)
        except Exception as e:  # untrusted input: any failure is the template's
            raise _error(name, e, "compiling") from None

    def render(self, messages: Sequence[Mapping[str, Any]], *, add_generation_prompt: bool = True,
               **kwargs: Any) -> str:
        """The prompt for ``messages`` (transformers' ``apply_chat_template(tokenize=False)``).

        ``kwargs`` become template variables (``tools``, ``documents``, ``enable_thinking``,
        ``date_string``...; ``tools`` and ``documents`` default to None as in transformers);
        ``bos_token``/``eos_token`` default to the constructor's. Raises ChatTemplateError.
        """
        variables = {"bos_token": self.bos_token, "eos_token": self.eos_token,
                     "tools": None, "documents": None}
        variables.update(_plain(kwargs))
        variables["messages"] = _messages(messages)
        variables["add_generation_prompt"] = add_generation_prompt
        token = _budget.set(_Budget())
        try:
            chunks: list[str] = []
            total = 0
            for chunk in self._template.generate(**variables):
                total += len(chunk)
                if total > MAX_OUTPUT_CHARS:
                    raise _LimitExceeded(f"the prompt would exceed {MAX_OUTPUT_CHARS:,} "
                                         f"characters")
                chunks.append(chunk)
            return "".join(chunks)
        except Exception as e:  # untrusted template: any failure is the template's
            raise _error(self.name, e, "rendering") from None
        finally:
            _budget.reset(token)


def render_chat_template(source: str, messages: Sequence[Mapping[str, Any]], *,
                         add_generation_prompt: bool = True, bos_token: str = "",
                         eos_token: str = "", name: str = "<template>", **kwargs: Any) -> str:
    """One-call form of ``ChatTemplate(source, ...).render(messages, ...)``."""
    return ChatTemplate(source, bos_token=bos_token, eos_token=eos_token, name=name).render(
        messages, add_generation_prompt=add_generation_prompt, **kwargs)
