"""Parameter records for loading a model and for generating text, and their validation.

The ``check_*`` helpers raise ``TypeError`` for a wrong type and ``ValueError`` for a bad value,
always naming the parameter; they return a normalised copy (floats as ``float``, ``stop`` as a
tuple of strings).
"""

from __future__ import annotations

import inspect
import json
import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, TypedDict, TypeVar

INT32_MAX = 2**31 - 1
SEED_MAX = 2**32 - 2  # llama.cpp reads 2**32 - 1 as "pick a random seed"
F = TypeVar("F", bound=Callable[..., Any])


def _option(default: Any, help: str, metavar: str) -> Any:
    """A field with the help text and metavar of its command-line option."""
    return field(default=default, metadata={"help": help, "metavar": metavar})


@dataclass(frozen=True)
class ModelParams:
    """How to load a model and size its context."""

    n_ctx: int = 2048  # 0: the model's training context
    n_batch: int = 512
    n_threads: int | None = None  # None: the cores available to this process
    use_mmap: bool = True  # ignored where the platform cannot map files (WebAssembly)
    vocab_only: bool = False  # the vocabulary only: tokenize and templates, no weights
    chat_template: str | None = None  # a Jinja chat template instead of the model's own
    n_parallel: int = 1  # sequences decoded together (slots); > 1: concurrent callers batch
    prompt_cache_mb: int = 256  # n_parallel > 1: host memory for evicted slots' KV states


@dataclass(frozen=True)
class GenerationParams:
    """Sampling settings for one generation (temperature 0 = greedy).

    The one declaration of the sampling options: every generating entry point takes each
    field by keyword, and ``llamart generate`` makes its options from them (help beside each).
    """

    max_tokens: int = _option(64, "tokens to generate at most", "N")
    temperature: float = _option(0.8, "0 = greedy", "T")
    top_k: int = _option(40, "sample from the K likeliest tokens, 0 = all", "K")
    top_p: float = _option(0.95, "nucleus sampling: the likeliest tokens up to mass P", "P")
    min_p: float = _option(0.05, "drop tokens below P times the likeliest's probability", "P")
    repeat_penalty: float = _option(1.1, "penalty for repeated tokens, 1 = none", "R")
    repeat_last_n: int = _option(64, "how many recent tokens the penalty looks at", "N")
    seed: int | None = _option(None, "sampling seed (default: a random one; -v prints it)", "S")
    stop: tuple[str, ...] = _option((), "stop string (repeatable)", "TEXT")
    grammar: str | None = _option(None, "GBNF grammar the output must match (rule root)", "GBNF")
    json_schema: str | Mapping[str, Any] | None = _option(
        None, "JSON schema (JSON text) the output must match", "SCHEMA")


class SamplingOptions(TypedDict, total=False):
    """The keyword view of GenerationParams (but ``max_tokens``) for ``**options`` typing.

    A test keeps its keys equal to GenerationParams' fields.
    """

    temperature: float
    top_k: int
    top_p: float
    min_p: float
    repeat_penalty: float
    repeat_last_n: int
    seed: int | None
    stop: str | Sequence[str]
    grammar: str | None
    json_schema: str | Mapping[str, Any] | None


class _Unset:
    """The type of :data:`UNSET`."""

    _instance: _Unset | None = None

    def __new__(cls) -> _Unset:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNSET"


# The default of every keyword that stands for a ModelParams / GenerationParams field: "not
# given". The values themselves are written once, in the dataclasses; a keyword passed with any
# value (even the default's) next to ``params=`` is a TypeError instead of being ignored.
UNSET: Any = _Unset()


def _with_field_defaults(func: F, cls: type) -> F:
    """Give ``func`` a runtime signature (help(), inspect) showing ``cls``' field defaults for
    its UNSET keywords and, when it takes ``**options``, naming every other field of ``cls``."""
    sig = inspect.signature(func)
    defaults = {f.name: f for f in fields(cls)}
    own = [p.replace(default=defaults[p.name].default) if p.default is UNSET else p
           for p in sig.parameters.values() if p.kind is not p.VAR_KEYWORD]
    extra = []
    if any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
        extra = [inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default,
                                   annotation=f.type)
                 for f in defaults.values() if f.name not in sig.parameters]
    func.__signature__ = sig.replace(parameters=own + extra)  # type: ignore[attr-defined]
    return func


def sampling_signature(func: F) -> F:
    """Give ``func`` (taking ``max_tokens=UNSET`` and ``**options: Unpack[SamplingOptions]``) a
    runtime signature that names every sampling option with its default, for help() and
    inspect."""
    return _with_field_defaults(func, GenerationParams)


def model_signature(func: F) -> F:
    """``load_model``'s runtime signature: its UNSET keywords show ModelParams' defaults."""
    return _with_field_defaults(func, ModelParams)


def generation_params(entry: str, max_tokens: Any, options: dict[str, Any],
                      params: GenerationParams | None) -> GenerationParams:
    """The checked GenerationParams of one call of ``entry`` (e.g. ``"generate"``).

    ``max_tokens`` may be a GenerationParams (the positional form) or UNSET; ``options`` are
    the sampling keywords given; ``params`` the keyword form. Unknown keywords are a TypeError.
    """
    unknown = sorted(set(options) - _OPTION_NAMES)
    if unknown:
        raise TypeError(f"{entry}() got an unexpected keyword argument {unknown[0]!r}")
    if isinstance(max_tokens, GenerationParams):
        if params is not None:
            raise TypeError("pass a GenerationParams once, as params= or positionally")
        params, max_tokens = max_tokens, UNSET
    given = dict(options, max_tokens=max_tokens)
    return check_generation_params(merge_params(params, GenerationParams, given))


def model_params(n_ctx: Any, given: dict[str, Any], params: ModelParams | None) -> ModelParams:
    """The checked ModelParams of one load_model call (``n_ctx`` may be a ModelParams; the
    keywords not given are UNSET)."""
    if isinstance(n_ctx, ModelParams):
        if params is not None:
            raise TypeError("pass a ModelParams once, as params= or as the second argument")
        params, n_ctx = n_ctx, UNSET
    return check_model_params(merge_params(params, ModelParams, dict(given, n_ctx=n_ctx)))


_OPTION_NAMES = frozenset(f.name for f in fields(GenerationParams)) - {"max_tokens"}


# ---- validation helpers ----

def _type_name(value: object) -> str:
    return type(value).__name__


def check_int(name: str, value: Any, *, lo: int | None = None, hi: int | None = INT32_MAX) -> int:
    """An ``int`` (``bool`` refused) within [lo, hi]."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, not {_type_name(value)}")
    value = int(value)
    if lo is not None and value < lo:
        raise ValueError(f"{name} must be >= {lo}, got {value}")
    if hi is not None and value > hi:
        raise ValueError(f"{name} must be <= {hi}, got {value}")
    return value


def check_float(name: str, value: Any) -> float:
    """A finite real number (``bool`` refused) as ``float``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, not {_type_name(value)}")
    f = float(value)
    if not math.isfinite(f):
        raise ValueError(f"{name} must be finite, got {f}")
    return f


def check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, not {_type_name(value)}")
    return value


def check_stop(value: Any) -> tuple[str, ...]:
    """``stop``: one string or a sequence of non-empty strings."""
    if isinstance(value, str):
        value = (value,)
    elif isinstance(value, (bytes, bytearray)) or not isinstance(value, (Sequence, set,
                                                                         frozenset)):
        raise TypeError(f"stop must be a str or a sequence of str, not {_type_name(value)}")
    out = []
    for i, s in enumerate(value):
        if not isinstance(s, str):
            raise TypeError(f"stop[{i}] must be a str, not {_type_name(s)}")
        if not s:
            raise ValueError(f"stop[{i}] is an empty string")
        out.append(s)
    return tuple(out)


def check_grammar(value: Any) -> str | None:
    """``grammar``: None or GBNF text (parsed later, by llama.cpp's parser)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"grammar must be a str (GBNF) or None, not {_type_name(value)}")
    if not value.strip():
        raise ValueError("grammar is empty")
    return value


def check_json_schema(value: Any) -> str | None:
    """``json_schema``: None, a mapping or its JSON text; returned as JSON text."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        try:
            return json.dumps(value, ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise ValueError(f"json_schema cannot be written as JSON: {e}") from None
    if not isinstance(value, str):
        raise TypeError(f"json_schema must be a dict or JSON text, not {_type_name(value)}")
    try:
        parsed = json.loads(value)
    except ValueError as e:
        raise ValueError(f"json_schema is not valid JSON: {e}") from None
    if not isinstance(parsed, (dict, bool)):
        raise ValueError(f"json_schema must be a JSON object, not {_type_name(parsed)}")
    return value


def check_generation_params(p: GenerationParams) -> GenerationParams:
    """Validate every field of ``p``; return a normalised copy."""
    if not isinstance(p, GenerationParams):
        raise TypeError(f"params must be a GenerationParams, not {_type_name(p)}")
    temperature = check_float("temperature", p.temperature)
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    top_p = check_float("top_p", p.top_p)
    if not 0 < top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    min_p = check_float("min_p", p.min_p)
    if not 0 <= min_p <= 1:
        raise ValueError(f"min_p must be in [0, 1], got {min_p}")
    repeat_penalty = check_float("repeat_penalty", p.repeat_penalty)
    if repeat_penalty <= 0:
        raise ValueError(f"repeat_penalty must be > 0, got {repeat_penalty}")
    seed = None if p.seed is None else check_int("seed", p.seed, lo=0, hi=SEED_MAX)
    grammar, json_schema = check_grammar(p.grammar), check_json_schema(p.json_schema)
    if grammar is not None and json_schema is not None:
        raise ValueError("pass grammar or json_schema, not both")
    return GenerationParams(
        max_tokens=check_int("max_tokens", p.max_tokens, lo=0),
        temperature=temperature,
        top_k=check_int("top_k", p.top_k, lo=0),
        top_p=top_p,
        min_p=min_p,
        repeat_penalty=repeat_penalty,
        repeat_last_n=check_int("repeat_last_n", p.repeat_last_n, lo=0),
        seed=seed,
        stop=check_stop(p.stop),
        grammar=grammar,
        json_schema=json_schema,
    )


def check_model_params(p: ModelParams) -> ModelParams:
    """Validate every field of ``p``; return a normalised copy."""
    if not isinstance(p, ModelParams):
        raise TypeError(f"params must be a ModelParams, not {_type_name(p)}")
    return ModelParams(
        n_ctx=check_int("n_ctx", p.n_ctx, lo=0),
        n_batch=check_int("n_batch", p.n_batch, lo=1),
        n_threads=None if p.n_threads is None else check_int("n_threads", p.n_threads, lo=1),
        use_mmap=check_bool("use_mmap", p.use_mmap),
        vocab_only=check_bool("vocab_only", p.vocab_only),
        chat_template=check_template("chat_template", p.chat_template),
        n_parallel=check_int("n_parallel", p.n_parallel, lo=1, hi=256),
        prompt_cache_mb=check_int("prompt_cache_mb", p.prompt_cache_mb, lo=0),
    )


def check_template(name: str, value: Any) -> str | None:
    """A Jinja template source (a non-empty str) or None."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str (a Jinja template) or None, not {_type_name(value)}")
    if not value.strip():
        raise ValueError(f"{name} is empty")
    return value


def merge_params(params: Any, cls: type, given: dict[str, Any]) -> Any:
    """``params`` if given (every keyword must then be UNSET), else ``cls`` made of the
    keywords given (the others keep the dataclass defaults).

    A keyword given next to ``params``, whatever its value, is a TypeError: the two ways of
    passing settings are not mixed silently.
    """
    given = {k: v for k, v in given.items() if v is not UNSET}
    if params is None:
        return cls(**given)
    if not isinstance(params, cls):
        raise TypeError(f"params must be a {cls.__name__}, not {_type_name(params)}")
    if given:
        raise TypeError(f"pass either params or keyword arguments, not both "
                        f"(got {next(iter(given))}=)")
    return params
