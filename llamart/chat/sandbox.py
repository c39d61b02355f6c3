"""The sandbox a chat template runs in: jinja2's ``ImmutableSandboxedEnvironment`` narrowed.

Attribute access is restricted beyond jinja's sandbox (no underscore names, only plain data and
a few safe methods); every loop step, call, operator and filter is counted against the render's
budget (:mod:`.limits`) and sized before its result is built; nesting is checked before the
(recursive) parser sees the source. transformers' globals and filters (:mod:`.transformers`)
are installed here.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import jinja2
import jinja2.ext
from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame, optimizeconst
from jinja2.runtime import LoopContext, Macro
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Cycler, Joiner, Namespace

from .limits import (
    MAX_CALL_DEPTH,
    MAX_INT_BITS,
    MAX_LOOP_ITERATIONS,
    MAX_NESTING,
    MAX_OUTPUT_CHARS,
    MAX_SLOW_FILTER_CHARS,
    MAX_VALUE_SIZE,
    SLOW_FILTERS,
    LimitExceeded,
    check_format,
    check_join,
    check_replace,
    check_size,
    check_width,
    current_budget,
    precheck_str_method,
    size_of,
)
from .transformers import (
    GenerationTag,
    TemplateDict,
    TemplateNamespace,
    raise_exception,
    strftime_now,
    tojson,
)

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
            raise LimitExceeded(f"a captured block would exceed {MAX_VALUE_SIZE:,} characters")
        out.append(p)
    return "".join(out)


def _wrap_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """A filter whose inputs are size-checked (some are pre-checked) and result capped."""

    def bounded(*args: Any, **kwargs: Any) -> Any:
        current_budget().tick()
        # pass_context/pass_eval_context filters get the context first: find the value
        value_at = 1 if args and isinstance(args[0], (jinja2.runtime.Context, nodes.EvalContext,
                                                      jinja2.Environment)) else 0
        rest = args[value_at + 1:]
        if len(args) > value_at:
            check_size(args[value_at], f"the input of |{name}")
            value = args[value_at]
            if name == "center":
                check_width(rest[0] if rest else kwargs.get("width", 80), 1, "|center")
            elif name == "indent":
                width = rest[0] if rest else kwargs.get("width", 4)
                lines = value.count("\n") + 1 if isinstance(value, str) else 1
                if isinstance(width, str):
                    check_width(len(width), lines, "|indent")
                else:
                    check_width(width, lines, "|indent")
            elif name == "format":
                check_format(value)
                for a in (*rest, *kwargs.values()):
                    check_size(a, "a format argument")
            elif name == "replace":
                check_replace(value, *rest[:3])
            elif name in SLOW_FILTERS and isinstance(value, str)\
                    and len(value) > MAX_SLOW_FILTER_CHARS:
                raise LimitExceeded(f"|{name} of more than {MAX_SLOW_FILTER_CHARS:,} characters")
            elif name == "join":
                check_join(list(value) if isinstance(value, (list, tuple)) else value,
                            rest[0] if rest else kwargs.get("d", ""))
        return check_size(func(*args, **kwargs), f"the result of |{name}")

    for attr in ("jinja_pass_arg",):
        if hasattr(func, attr):
            setattr(bounded, attr, getattr(func, attr))
    return bounded


def _bounded_iter(iterable: Any) -> Iterator[Any]:
    """A for-loop's iterable, counted against the loop and time budgets."""
    b = current_budget()
    for item in iterable:
        b.iterations += 1
        if b.iterations > MAX_LOOP_ITERATIONS:
            raise LimitExceeded(f"more than {MAX_LOOP_ITERATIONS:,} loop iterations")
        b.tick()
        yield item


class BoundedEnvironment(ImmutableSandboxedEnvironment):
    """transformers' chat-template environment with llamart's bounds."""

    code_generator_class = _BoundedCodeGenerator
    intercepted_binops = frozenset({"*", "**", "+", "%"})
    concat = staticmethod(_bounded_join)  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__(trim_blocks=True, lstrip_blocks=True, finalize=self._finalize,
                         extensions=[GenerationTag, jinja2.ext.loopcontrols])
        self.filters["tojson"] = tojson
        self.filters = {k: _wrap_filter(k, f) for k, f in self.filters.items()}
        self.globals.pop("lipsum", None)  # unbounded text generator, used by no chat template
        self.globals["raise_exception"] = raise_exception
        self.globals["strftime_now"] = strftime_now
        self.globals["dict"] = TemplateDict()
        self.globals["namespace"] = TemplateNamespace
        self.bounded_iter = _bounded_iter
        self.bounded_concat = self._bounded_concat

    # -- attribute access --
    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if not super().is_safe_attribute(obj, attr, value) or attr.startswith("_"):
            return False
        if isinstance(obj, _OPAQUE) or not isinstance(obj, _ALLOWED_OBJECTS + (TemplateDict,)):
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
        b = current_budget()
        b.tick()
        method = getattr(__obj, "__wrapped__", __obj)  # the sandbox wraps str.format
        owner = getattr(method, "__self__", None)
        if isinstance(owner, str) and isinstance(getattr(method, "__name__", None), str):
            precheck_str_method(method.__name__, owner, args, kwargs)
        b.depth += 1
        try:
            if b.depth > MAX_CALL_DEPTH:
                raise LimitExceeded(f"calls nested deeper than {MAX_CALL_DEPTH} "
                                     f"(unbounded recursion?)")
            rv = super().call(__context, __obj, *args, **kwargs)
        finally:
            b.depth -= 1
        return check_size(rv, "a call's result")

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "+" and type(left) is str and type(right) is str:  # the common case
            if len(left) + len(right) > MAX_VALUE_SIZE:
                raise LimitExceeded(f"'+' would exceed {MAX_VALUE_SIZE:,} characters/items")
            return left + right
        current_budget().tick()
        if operator == "*":
            if isinstance(left, int) and isinstance(right, int):
                if left.bit_length() + right.bit_length() > MAX_INT_BITS:
                    raise LimitExceeded(f"an integer larger than {MAX_INT_BITS} bits")
            else:
                seq, n = (right, left) if isinstance(left, int) else (left, right)
                if isinstance(n, int) and isinstance(seq, (str, list, tuple))\
                        and size_of(seq) * max(n, 0) > MAX_VALUE_SIZE:
                    raise LimitExceeded(f"'*' would exceed {MAX_VALUE_SIZE:,} characters/items")
        elif operator == "**":
            if isinstance(left, int) and isinstance(right, int) and abs(left) > 1\
                    and right * left.bit_length() > MAX_INT_BITS:
                raise LimitExceeded(f"an integer larger than {MAX_INT_BITS} bits")
        elif operator == "+":
            if isinstance(left, (str, list, tuple)) and isinstance(right, (str, list, tuple))\
                    and size_of(left) + size_of(right) > MAX_VALUE_SIZE:
                raise LimitExceeded(f"'+' would exceed {MAX_VALUE_SIZE:,} characters/items")
        elif operator == "%" and isinstance(left, str):
            check_format(left)
            check_size(right, "a '%' argument")
        return super().call_binop(context, operator, left, right)

    @staticmethod
    def _bounded_concat(parts: Sequence[Any]) -> str:
        current_budget().tick()
        total = 0
        for p in parts:
            total += size_of(p)
            if total > MAX_VALUE_SIZE:
                raise LimitExceeded(f"'~' would exceed {MAX_VALUE_SIZE:,} characters")
        return "".join(p if isinstance(p, str) else str(p) for p in parts)

    @staticmethod
    def _finalize(value: Any) -> Any:
        if not isinstance(value, str) and size_of(value, MAX_OUTPUT_CHARS) > MAX_OUTPUT_CHARS:
            raise LimitExceeded(f"an output value larger than {MAX_OUTPUT_CHARS:,} characters")
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


_ENV: BoundedEnvironment | None = None


def sandbox_environment() -> BoundedEnvironment:
    global _ENV
    if _ENV is None:
        _ENV = BoundedEnvironment()
    return _ENV
