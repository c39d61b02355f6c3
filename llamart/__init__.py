"""llamart: llama.cpp GGUF models from Python, natively and in the browser (Pyodide).

>>> from llamart import Engine
>>> with Engine() as engine:                      # doctest: +SKIP
...     engine.load_model("model.gguf")
...     print(engine.complete("Hello", max_tokens=16, temperature=0.0))
"""

from ._version import __version__
from .bindings.base import Capabilities, ModelInfo
from .engine import Engine
from .errors import (
    AdapterError,
    ContextOverflowError,
    EngineStateError,
    GrammarError,
    LlamartError,
    LoraUnsupportedWarning,
    ModelLoadError,
    UnsupportedCapabilityError,
)
from .params import GenerationParams, ModelParams

__all__ = [
    "AdapterError",
    "Capabilities",
    "ContextOverflowError",
    "Engine",
    "EngineStateError",
    "GenerationParams",
    "GrammarError",
    "LlamartError",
    "LoraUnsupportedWarning",
    "ModelInfo",
    "ModelLoadError",
    "ModelParams",
    "UnsupportedCapabilityError",
    "__version__",
]
