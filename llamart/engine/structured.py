"""Structured output: the JSON schema a chat ``response_format`` asks for, and the engine's
check of a generation's grammar before any token is generated.

The grammar itself is llama.cpp's business (GBNF, parsed and applied in the C core); JSON
schemas become grammars by llama.cpp's own converter (``common/json-schema-to-grammar.cpp``),
compiled into the core natively and in WebAssembly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import Any

from ..bindings.base import Backend
from ..errors import UnsupportedCapabilityError, backend_errors
from ..params import GenerationParams, check_generation_params, check_grammar, check_json_schema

__all__ = ["ANY_JSON_OBJECT", "check_structured", "grammar_matches", "json_schema_to_grammar",
           "require", "response_format_schema", "with_response_format"]

# what {"type": "json_object"} without a schema asks for: any JSON object
ANY_JSON_OBJECT: Mapping[str, Any] = {"type": "object"}
_TYPES = ("text", "json_object", "json_schema")


def response_format_schema(response_format: Any) -> Any:
    """The JSON schema of a chat ``response_format`` (None: plain text).

    Takes OpenAI's ``{"type": "json_schema", "json_schema": {"name": ..., "schema": {...}}}``,
    the flat ``{"type": "json_schema", "schema": {...}}``, llama-cpp-python's
    ``{"type": "json_object", "schema": {...}}`` (without a schema: any JSON object) and
    ``{"type": "text"}``. Other keys (``name``, ``strict``, ``description``) are ignored.
    """
    if response_format is None:
        return None
    if not isinstance(response_format, Mapping):
        raise TypeError("response_format must be a dict such as {'type': 'json_object'}, not "
                        f"{type(response_format).__name__}")
    kind = response_format.get("type")
    if kind not in _TYPES:
        raise ValueError(f"response_format['type'] must be one of {', '.join(map(repr, _TYPES))}, "
                         f"got {kind!r}")
    if kind == "text":
        return None
    if kind == "json_object":
        schema = response_format.get("schema")
        return ANY_JSON_OBJECT if schema is None else schema
    inner = response_format.get("json_schema")
    if inner is not None:
        if not isinstance(inner, Mapping) or inner.get("schema") is None:
            raise ValueError("response_format['json_schema'] must be a dict with a 'schema' "
                             "(OpenAI's shape: {'name': ..., 'schema': {...}})")
        return inner["schema"]
    if response_format.get("schema") is None:
        raise ValueError("response_format of type 'json_schema' needs a schema: "
                         "{'type': 'json_schema', 'json_schema': {'name': ..., 'schema': {...}}}")
    return response_format["schema"]


def with_response_format(params: GenerationParams, response_format: Any) -> GenerationParams:
    """``params`` constrained to the JSON a chat ``response_format`` asks for (unchanged when it
    asks for none); ValueError if ``params`` has a grammar or JSON schema already."""
    schema = response_format_schema(response_format)
    if schema is None:
        return params
    if params.grammar is not None or params.json_schema is not None:
        raise ValueError("pass response_format or grammar/json_schema, not both")
    return check_generation_params(dataclasses.replace(params, json_schema=schema))


def require(backend: Backend, what: str) -> None:
    """UnsupportedCapabilityError unless the backend has capability ``what`` ("grammar" or
    "json_schema")."""
    caps = backend.capabilities
    if not getattr(caps, what):
        raise UnsupportedCapabilityError(f"the {caps.backend} backend cannot constrain output "
                                         f"({what}= is not supported there)")


def check_structured(backend: Backend, params: GenerationParams) -> None:
    """Before a generation starts: the backend can constrain it, and its grammar (or the JSON
    schema's) is one llama.cpp accepts. GrammarError naming the problem otherwise."""
    if params.grammar is None and params.json_schema is None:
        return
    require(backend, "grammar" if params.json_schema is None else "json_schema")
    with backend_errors("grammar"):
        grammar = params.grammar
        if params.json_schema is not None:
            grammar = backend.json_schema_to_grammar(params.json_schema)
        assert grammar is not None
        backend.check_grammar(grammar)


def grammar_matches(backend: Backend, grammar: Any, text: Any,
                    guard: AbstractContextManager[object]) -> bool:
    """``Engine.grammar_matches``: the arguments checked, then the match inside ``guard`` (the
    engine's lock with a model loaded)."""
    checked = check_grammar(grammar)
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, not {type(text).__name__}")
    with guard:
        require(backend, "grammar")
        with backend_errors("grammar"):
            return backend.grammar_match(checked or "", text)


def json_schema_to_grammar(backend: Backend, schema: Any,
                           guard: AbstractContextManager[object]) -> str:
    """``Engine.json_schema_to_grammar``: the schema checked, then converted inside ``guard``
    (the engine's lock)."""
    text = check_json_schema(schema)
    if text is None:
        raise TypeError("schema must be a dict or JSON text, not None")
    with guard:
        require(backend, "json_schema")
        with backend_errors("grammar"):
            return backend.json_schema_to_grammar(text)
