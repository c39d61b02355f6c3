"""Structured output: ``grammar=`` (GBNF), ``json_schema=`` and chat's ``response_format=``, on
the tiny generated model and the real SmolLM2, in every runtime (natively and in Pyodide).

The grammar is llama.cpp's (GBNF parser and grammar sampler, in the C core); JSON schemas become
grammars by llama.cpp's json-schema-to-grammar compiled into the core. Outputs are checked by
parsing them (json.loads) and validating them against the schema with the ``jsonschema``
package natively (in Pyodide its rpds-py dependency is missing, so the structure is checked by
hand there: the same hand check runs natively too). The C converter is cross-checked against
llama-cpp-python's independent Python port of llama.cpp's converter (native only: it reads the
pinned source in .cache).
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from llamart import Engine, GenerationParams, GrammarError, UnsupportedCapabilityError
from llamart.engine.structured import ANY_JSON_OBJECT, response_format_schema
from llamart.testing import FakeBackend
from tests.support.platform_support import run_coroutine

IN_PYODIDE = sys.platform == "emscripten"
YES_NO = 'root ::= ("yes" | "no")'
GREEDY = {"temperature": 0.0, "repeat_penalty": 1.0}
PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 24},
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
        "city": {"type": "string", "enum": ["Paris", "London", "Rome"]},
    },
    "required": ["name", "age", "city"],
    "additionalProperties": False,
}
PERSON_PROMPT = [{"role": "system", "content": "You answer with JSON only."},
                 {"role": "user", "content": "Describe a person who lives in Paris: name, "
                                             "age and city."}]


def llama_grammar_py() -> Path:
    """llama-cpp-python's converter in the pinned sdist (the folder follows the one pin,
    cmake/llama_cpp_pin.cmake, read natively only: Pyodide has no cmake/)."""
    from tools.llama_cpp_pin import sdist_dir

    return sdist_dir() / "llama_cpp" / "llama_grammar.py"


def _validate(obj: Any, schema: dict) -> None:
    """jsonschema natively; in Pyodide (no rpds-py, so no jsonschema) only the hand checks."""
    if IN_PYODIDE:
        return
    import jsonschema

    jsonschema.validate(obj, schema)


def _check_person(text: str) -> dict:
    obj = json.loads(text)
    assert isinstance(obj, dict) and set(obj) == {"name", "age", "city"}, obj
    assert isinstance(obj["name"], str) and len(obj["name"]) <= 24
    assert isinstance(obj["age"], int) and not isinstance(obj["age"], bool)
    assert 0 <= obj["age"] <= 150 and obj["city"] in ("Paris", "London", "Rome")
    _validate(obj, PERSON)
    return obj


@pytest.fixture(scope="module")
def tiny(fx):
    eng = Engine()
    eng.load_model(fx["model_f32"], n_ctx=512, n_threads=1)
    yield eng
    eng.dispose()


@pytest.fixture(scope="module")
def smol(real_model):
    eng = Engine()
    eng.load_model(real_model("smollm2"), n_ctx=1024, n_threads=1)
    yield eng
    eng.dispose()


@pytest.fixture(params=["tiny", "smol"])
def any_model(request):
    return request.getfixturevalue(request.param)


# ---- what the backends say ----

def test_capabilities_come_from_the_c_build(engine):
    caps = engine.capabilities
    assert caps.grammar is True and caps.json_schema is True  # both builds compile grammar.cpp
    bits = int(engine._backend._lib.lm_capabilities())
    assert bits & 8 and bits & 16


def test_fake_backend_says_no_and_refuses(fx):
    eng = Engine(FakeBackend())
    assert eng.capabilities.grammar is False and eng.capabilities.json_schema is False
    with pytest.raises(UnsupportedCapabilityError, match="json_schema"):
        eng.json_schema_to_grammar({"type": "object"})
    eng.load_model(fx["model_f32"])
    with pytest.raises(UnsupportedCapabilityError, match="grammar"):
        eng.complete("hi", 4, grammar=YES_NO)
    assert isinstance(eng.complete("hi", 4), str)  # usable after


# ---- GBNF grammars ----

@pytest.mark.parametrize("options", [GREEDY, {"temperature": 0.0, "repeat_penalty": 1.3},
                                     {"temperature": 1.0, "top_k": 0, "top_p": 1.0, "seed": 3}],
                         ids=["greedy-fast-path", "greedy-chain", "sampled"])
def test_yes_no_is_exactly_one_of_them(any_model, options):
    for prompt in ("Is the sky blue?", "Once upon a time", "2 + 2 = 5. True or false:"):
        text = any_model.complete(prompt, 16, grammar=YES_NO, **options)
        assert text in ("yes", "no"), text
        assert any_model.last_finish_reason == "stop"  # the grammar ended: end of generation


def test_greedy_grammar_choice_is_the_likelier_branch(tiny):
    """Greedy under a grammar takes the argmax among the tokens the grammar allows."""
    prompt = "Once upon a time"
    logits = tiny.logits(prompt)
    yes, no = tiny.tokenize("yes", False)[0], tiny.tokenize("no", False)[0]
    want = "yes" if logits[yes] > logits[no] else "no"
    got = tiny.complete(prompt, 8, grammar='root ::= "yes" | "no"', **GREEDY)
    assert got == want or not got.startswith(want[0])  # first tokens decide the branch
    assert got in ("yes", "no")


def test_grammar_reaches_every_entry_point(smol):
    msgs = [{"role": "user", "content": "Is Paris the capital of France? yes or no"}]
    got = [smol.complete("Paris is in France:", 8, grammar=YES_NO, **GREEDY),
           "".join(smol.generate("Paris is in France:", 8, grammar=YES_NO, **GREEDY)),
           smol.chat(msgs, 8, grammar=YES_NO, **GREEDY),
           "".join(smol.chat(msgs, 8, stream=True, grammar=YES_NO, **GREEDY)),
           run_coroutine(smol.acomplete("Paris is in France:", 8, grammar=YES_NO, **GREEDY)),
           run_coroutine(smol.agenerate("Paris is in France:", 8, grammar=YES_NO,
                                        **GREEDY).text()),
           run_coroutine(smol.achat(msgs, 8, grammar=YES_NO, **GREEDY).text()),
           smol.complete("Paris is in France:", GenerationParams(8, grammar=YES_NO, **GREEDY))]
    assert all(g in ("yes", "no") for g in got), got
    assert got[0] == got[1] == got[4] == got[5] == got[7] and got[2] == got[3] == got[6]


def test_a_grammar_shapes_real_text(smol):
    grammar = r'root ::= "The capital of France is " [A-Z] [a-z]+ "."'
    text = smol.chat([{"role": "user", "content": "What is the capital of France?"}], 24,
                     grammar=grammar, **GREEDY)
    assert re.fullmatch(r"The capital of France is [A-Z][a-z]+\.", text), text
    assert text == "The capital of France is Paris."


def test_stop_strings_still_apply(tiny):
    text = tiny.complete("x", 32, grammar='root ::= "abcdef"', stop="cd", **GREEDY)
    assert text == "ab" and tiny.last_finish_reason == "stop"


# ---- JSON ----

def test_json_schema_output_validates(smol):
    gen = smol.chat(PERSON_PROMPT, 96, stream=True, json_schema=PERSON, **GREEDY)
    chunks = list(gen)
    assert len(chunks) > 3 and gen.finish_reason == "stop"
    obj = _check_person("".join(chunks))
    assert obj["city"] == "Paris"


def test_json_schema_on_complete_and_generate(any_model):
    schema = {"type": "object", "properties": {"answer": {"type": "boolean"}},
              "required": ["answer"]}
    for text in (any_model.complete("Is water wet? JSON:", 48, json_schema=schema, **GREEDY),
                 "".join(any_model.generate("Is water wet? JSON:", 48,
                                            json_schema=json.dumps(schema), **GREEDY))):
        obj = json.loads(text)
        assert isinstance(obj, dict) and isinstance(obj["answer"], bool)
        _validate(obj, schema)


@pytest.mark.parametrize("response_format", [
    {"type": "json_schema", "json_schema": {"name": "person", "strict": True, "schema": PERSON}},
    {"type": "json_schema", "schema": PERSON},
    {"type": "json_object", "schema": PERSON},
], ids=["openai", "flat", "llama-cpp-python"])
def test_response_format_shapes(smol, response_format):
    _check_person(smol.chat(PERSON_PROMPT, 96, response_format=response_format, **GREEDY))
    assert smol.last_finish_reason == "stop"


def test_response_format_json_object_is_any_object(any_model):
    msgs = [{"role": "user", "content": "Give me a JSON object about a cat."}]
    text = run_coroutine(any_model.achat(msgs, 128, response_format={"type": "json_object"},
                                         **GREEDY).text())
    if any_model.last_finish_reason == "stop":
        assert isinstance(json.loads(text), dict)
    else:  # max_tokens reached inside the object: truncated, but a prefix of one
        assert any_model.last_finish_reason == "length" and text.lstrip().startswith("{")


def test_response_format_text_and_parsing():
    assert response_format_schema(None) is None
    assert response_format_schema({"type": "text"}) is None
    assert response_format_schema({"type": "json_object"}) is ANY_JSON_OBJECT
    assert response_format_schema({"type": "json_schema", "json_schema": {"schema": PERSON}}) \
        == PERSON
    with pytest.raises(ValueError, match="type"):
        response_format_schema({"type": "xml"})
    with pytest.raises(ValueError, match="schema"):
        response_format_schema({"type": "json_schema"})
    with pytest.raises(ValueError, match="schema"):
        response_format_schema({"type": "json_schema", "json_schema": {"name": "x"}})
    with pytest.raises(TypeError):
        response_format_schema("json")


def test_response_format_with_a_grammar_is_refused(tiny):
    with pytest.raises(ValueError, match="not both"):
        tiny.chat([{"role": "user", "content": "hi"}], 4, grammar=YES_NO,
                  response_format={"type": "json_object"})
    with pytest.raises(ValueError, match="not both"):
        tiny.complete("hi", 4, grammar=YES_NO, json_schema={"type": "object"})


def test_the_any_object_grammar_is_llama_cpps(tiny):
    grammar = tiny.json_schema_to_grammar(ANY_JSON_OBJECT)
    rules = dict(line.split(" ::= ", 1) for line in grammar.strip().splitlines())
    assert rules["root"] == "object" and rules["object"].startswith('"{"')
    assert rules["value"] == "object | array | string | number | boolean | null"
    for doc, ok in (('{"a": [1, {"b": null}], "c": "d"}', True), ("{}", True), ("[1]", False),
                    ('"x"', False), ("{", False)):
        assert tiny.grammar_matches(grammar, doc) is ok, doc


# ---- bad input: clear errors before any token, the engine usable after ----

BAD_GRAMMARS = [
    ('root ::= "yes', "unexpected end of input"),
    ('answer ::= "yes"', "no 'root' rule"),
    ("root ::= answer", "rule 'answer' is used but never defined"),
    ('root ::= root "a" | "a"', "left recursion"),
    ("root ::= " + "(" * 2000 + '"a"' + ")" * 2000, "nested more than 256"),
    ('root ::= "a"\x00', "NUL byte"),
    ("root = 'yes'", "expecting ::="),
    ('root ::= [a-', "unexpected end of input"),
]


@pytest.mark.parametrize("grammar, reason", BAD_GRAMMARS,
                         ids=[r for _, r in BAD_GRAMMARS])
def test_a_bad_grammar_is_a_grammar_error(tiny, grammar, reason):
    with pytest.raises(GrammarError, match=re.escape(reason)) as info:
        tiny.generate("hello", 8, grammar=grammar)  # at the call, before any token
    assert isinstance(info.value, ValueError) and "invalid grammar" in str(info.value)
    assert tiny.complete("hello", 4, grammar=YES_NO, **GREEDY) in ("yes", "no")


def test_grammar_argument_types(tiny):
    with pytest.raises(ValueError, match="grammar is empty"):
        tiny.complete("hi", 4, grammar="  ")
    with pytest.raises(TypeError, match="grammar must be a str"):
        tiny.complete("hi", 4, grammar=b"root ::= x")
    with pytest.raises(ValueError, match="not valid JSON"):
        tiny.complete("hi", 4, json_schema="{type: object}")
    with pytest.raises(TypeError, match="json_schema"):
        tiny.complete("hi", 4, json_schema=42)


@pytest.mark.parametrize("schema, reason", [
    ({"$ref": "#/definitions/missing"}, "cannot resolve $ref #/definitions/missing"),
    ({"$ref": "https://example.com/s.json"}, "only references into the same document"),
    ({"type": "string", "pattern": "^(a$"}, "Invalid pattern"),
    ({"type": "decimal"}, "unrecognized type decimal"),
    ({"type": "array", "minItems": -1}, "minItems must be a non-negative integer"),
])
def test_an_unsupported_schema_is_a_grammar_error(tiny, schema, reason):
    with pytest.raises(GrammarError, match=re.escape(reason)):
        tiny.complete("hello", 8, json_schema=schema)
    with pytest.raises(GrammarError, match=re.escape(reason)):
        tiny.json_schema_to_grammar(schema)
    assert tiny.complete("hello", 4, grammar=YES_NO, **GREEDY) in ("yes", "no")


def test_max_tokens_inside_the_grammar_truncates(any_model):
    """The decision: like llama-cpp-python, the text so far, finish_reason "length"."""
    text = any_model.complete("Count:", 5, grammar='root ::= "a"{40}', **GREEDY)
    assert any_model.last_finish_reason == "length"
    assert 1 <= len(text) <= 40 and set(text) == {"a"}
    text = any_model.chat(PERSON_PROMPT, 4, json_schema=PERSON, **GREEDY)
    assert any_model.last_finish_reason == "length"
    with pytest.raises(ValueError):
        json.loads(text)
    assert any_model.complete("hello", 4, grammar=YES_NO, **GREEDY) in ("yes", "no")


def test_a_grammar_no_token_can_continue(tiny):
    """A NUL character: no token's piece starts with one, so the grammar cannot be followed."""
    gen = tiny.generate("hello", 8, grammar=r'root ::= "a" "\x00"', **GREEDY)
    with pytest.raises(GrammarError, match="allows no token"):
        "".join(gen)
    assert gen.finish_reason == "error"
    assert tiny.complete("hello", 4, grammar=YES_NO, **GREEDY) in ("yes", "no")


def test_many_grammar_generations_in_a_row(tiny):
    """The grammar is reset per generation: it never carries over."""
    for i in range(20):
        grammar = YES_NO if i % 2 else 'root ::= "maybe"'
        text = tiny.complete("q", 8, grammar=grammar, temperature=0.7, seed=i)
        assert text in (("yes", "no") if i % 2 else ("maybe",))
    assert tiny.complete("q", 3, **GREEDY) == tiny.complete("q", 3, **GREEDY)  # no grammar


# ---- the C converter against an independent reference ----

# llama-cpp-python's port predates integer minimum/maximum (it accepts -1 for PERSON's age):
# the cross-check leaves the range out, test_integer_range_is_enforced checks it on ours
PERSON_NO_RANGE = {**PERSON, "properties": {**PERSON["properties"], "age": {"type": "integer"}}}
# (schema, sample documents): the two converters' grammars must accept exactly the same ones
CROSS = [
    ({"type": "boolean"}, ["true", "false", "null", "True", '"true"']),
    ({"type": "string", "enum": ["red", "green", "blue"]},
     ['"red"', '"blue"', '"pink"', "red", '"red "']),
    ({"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "string"}},
      "required": ["a"]},
     ['{"a":1}', '{"a": 1, "b": "x"}', '{"b":"x"}', '{"a":"1"}', '{"a":1.5}', '{"a":-7}',
      '{"a":1,"c":2}', "{}"]),
    ({"type": "array", "items": {"type": "number"}, "minItems": 1, "maxItems": 3},
     ["[1]", "[1,2.5,-3e2]", "[]", "[1,2,3,4]", '["1"]', "[0.5, 1]"]),
    ({"type": "string", "minLength": 2, "maxLength": 5},
     ['"ab"', '"abcde"', '"a"', '"abcdef"', '"a\\nb"', '"\u00e9t\u00e9"']),
    (PERSON_NO_RANGE, ['{"name":"Ann","age":30,"city":"Paris"}',
                       '{"name":"Ann","age":7,"city":"Oslo"}',
              '{"name":"' + "x" * 25 + '","age":1,"city":"Rome"}', '{"age":1,"city":"Rome"}',
                       '{"name":"Bo","age":150,"city":"London"}', '{"name":"Bo","age":"1"}']),
]


def _reference_converter():
    path = llama_grammar_py()
    if not path.exists():
        pytest.skip(f"{path} is missing (the pinned source is fetched by the build)")
    spec = importlib.util.spec_from_file_location("_ref_llama_grammar", path)
    assert spec and spec.loader
    ref = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ref)
    return ref.json_schema_to_gbnf


@pytest.mark.skipif(IN_PYODIDE, reason="reads cmake/llama_cpp_pin.cmake (native only)")
def test_the_reference_converter_is_found_through_the_pin(tmp_path: Path) -> None:
    """After a pin bump the reference test must look in the new sdist's folder, not skip."""
    from tools.llama_cpp_pin import pin_values, sdist_dir

    (tmp_path / "cmake").mkdir()
    (tmp_path / "cmake" / "llama_cpp_pin.cmake").write_text(
        'set(LLAMART_LLAMA_SDIST_PACKAGE "llama-cpp-python")\n'
        'set(LLAMART_LLAMA_SDIST_VERSION "9.9.9")\n')
    assert sdist_dir(tmp_path) == tmp_path / ".cache" / "llama_cpp_python-9.9.9"
    version = pin_values()["LLAMART_LLAMA_SDIST_VERSION"]
    assert llama_grammar_py().parts[-3] == f"llama_cpp_python-{version}"


@pytest.mark.skipif(IN_PYODIDE, reason="reads llama-cpp-python's converter from the pinned "
                                       "source in .cache (native only)")
@pytest.mark.parametrize("schema, samples", CROSS, ids=[json.dumps(s)[:30] for s, _ in CROSS])
def test_converter_agrees_with_llama_cpp_pythons(tiny, schema, samples):
    """llama-cpp-python's Python port of llama.cpp's converter (an older generation of it: its
    text differs, e.g. in whitespace rules) must accept the same documents as ours; every
    accepted one validates against the schema (jsonschema), and some are rejected."""
    ours = tiny.json_schema_to_grammar(schema)
    theirs = _reference_converter()(json.dumps(schema))
    verdicts = []
    for doc in samples:
        a, b = tiny.grammar_matches(ours, doc), tiny.grammar_matches(theirs, doc)
        assert a == b, (doc, a, b)
        if a:
            _validate(json.loads(doc), schema)
        verdicts.append(a)
    assert any(verdicts) and not all(verdicts), verdicts


def test_grammar_matches(tiny):
    assert tiny.grammar_matches(YES_NO, "yes") and tiny.grammar_matches(YES_NO, "no")
    assert not tiny.grammar_matches(YES_NO, "ye") and not tiny.grammar_matches(YES_NO, "yess")
    assert not tiny.grammar_matches(YES_NO, "")
    with pytest.raises(GrammarError, match="no 'root' rule"):
        tiny.grammar_matches('a ::= "x"', "x")


def test_integer_range_is_enforced(tiny):
    grammar = tiny.json_schema_to_grammar(PERSON)
    for age, ok in ((0, True), (42, True), (150, True), (-1, False), (151, False), (1000, False)):
        doc = json.dumps({"name": "Ann", "age": age, "city": "Rome"})
        assert tiny.grammar_matches(grammar, doc) is ok, doc
