"""Hugging Face transformers' chat-template semantics (``render_jinja_template``).

Its globals (``raise_exception``, ``strftime_now``, ``dict``, ``namespace``), the ``tojson``
filter (``json.dumps(ensure_ascii=False, ...)``), the ``{% generation %}`` tag, and the data a
template sees: only plain JSON-like values, message keys that are None dropped, reasoning fields
aliased.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import jinja2
import jinja2.ext
from jinja2 import nodes
from jinja2.utils import Namespace

from .limits import MAX_JSON_INDENT, MAX_NESTING, LimitExceeded, check_format, check_size, too_deep


class TemplateRaised(jinja2.TemplateError):
    """``raise_exception(message)`` from the template."""


class TemplateDict:
    """transformers' ``dict`` global: calling it and ``fromkeys`` only."""

    def __call__(self, *args: Any, **kwargs: Any) -> dict[Any, Any]:
        return dict(*args, **kwargs)

    def fromkeys(self, *args: Any, **kwargs: Any) -> dict[Any, Any]:
        return dict.fromkeys(*args, **kwargs)


class TemplateNamespace(Namespace):
    """transformers' ``namespace``: no underscore-prefixed attributes."""

    def __init__(*args: Any, **kwargs: Any) -> None:  # jinja's signature trick (self in args)
        self, args = args[0], args[1:]
        attrs = dict(*args, **kwargs)
        for name in attrs:
            TemplateNamespace._check_name(name)
        Namespace.__init__(self, attrs)

    def __setitem__(self, name: str, value: Any) -> None:
        TemplateNamespace._check_name(name)
        if too_deep(value):  # loops can nest values only through a namespace
            raise LimitExceeded(f"a value nested deeper than {MAX_NESTING} levels")
        Namespace.__setitem__(self, name, value)

    @staticmethod
    def _check_name(name: Any) -> None:
        if isinstance(name, str) and name.startswith("_"):
            raise jinja2.exceptions.SecurityError(
                f"chat templates cannot store underscore-prefixed attributes on a namespace "
                f"({name!r})")


class GenerationTag(jinja2.ext.Extension):
    """transformers' ``{% generation %}...{% endgeneration %}``: renders its body (in a scope)."""

    tags = {"generation"}

    def parse(self, parser: Any) -> nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return nodes.Scope(body, lineno=lineno)


def tojson(x: Any, ensure_ascii: bool = False, indent: Any = None, separators: Any = None,
            sort_keys: bool = False) -> str:
    """transformers' ``tojson``: json.dumps without HTML escaping, with its options."""
    if isinstance(indent, int) and indent > MAX_JSON_INDENT or (
            isinstance(indent, str) and len(indent) > MAX_JSON_INDENT):
        raise LimitExceeded(f"tojson indent larger than {MAX_JSON_INDENT}")
    if isinstance(separators, (list, tuple)):
        for s in separators:
            check_size(s, "a tojson separator")
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


def raise_exception(message: Any) -> None:
    raise TemplateRaised(str(message))


def strftime_now(format: str) -> str:
    check_format(format)
    return datetime.now().strftime(format)


_REASONING_FIELDS = ("reasoning_content", "thinking", "reasoning")


def plain_data(value: Any, depth: int = 0) -> Any:
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
        return {plain_data(k, depth + 1): plain_data(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [plain_data(v, depth + 1) for v in value]
    if isinstance(value, tuple):
        return tuple(plain_data(v, depth + 1) for v in value)
    return f"<{type(value).__name__}>"


def template_messages(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Messages as transformers passes them: None values dropped, reasoning fields aliased."""
    out = []
    for m in messages:
        if not isinstance(m, Mapping):
            raise TypeError(f"chat messages must be dicts, got {type(m).__name__}")
        msg = plain_data({k: v for k, v in m.items() if v is not None})
        reasoning = next((msg[k] for k in _REASONING_FIELDS if msg.get(k) is not None), None)
        if reasoning is not None:
            msg = {"thinking": reasoning, **msg, "reasoning_content": reasoning}
        out.append(msg)
    return out
