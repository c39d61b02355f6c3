"""GGUF files in pure Python (stdlib only: runs in Pyodide too): read a header, check it
against llama.cpp's rules, describe it.

- :mod:`.spec`: facts of the format and of ggml's tensor types;
- :mod:`.header`: :class:`GGUFHeader`, :class:`TensorInfo`, :class:`GGUFError`;
- :mod:`.reader`: :func:`read_header`, the format reader;
- :mod:`.rules`: :func:`validate_model`, :func:`validate_adapter`, llama.cpp's rules;
- :mod:`.summary`: :func:`model_summary`, :func:`adapter_summary`.

The parser modules above import nothing else from llamart (but the C API's constants,
``llamart.bindings._c_constants``, a generated data module): a caller that has the C library
passes its string walk as ``scan=``. Two bridges sit beside them and are not imported here:

- :mod:`.c_scan`: :func:`~llamart.gguf.c_scan.c_string_scan`, the C library's string walk of
  this platform (the one place that asks the backends for it);
- :mod:`.model_files`: the Engine's checks of model and adapter files before llama.cpp reads
  them, failures as ModelLoadError / AdapterError.
"""

from .header import GGUFError, GGUFHeader, TensorInfo
from .reader import StringScan, read_header
from .rules import validate_adapter, validate_model
from .spec import GGML_TYPES
from .summary import adapter_summary, model_summary

__all__ = [
    "GGML_TYPES",
    "GGUFError",
    "GGUFHeader",
    "StringScan",
    "TensorInfo",
    "adapter_summary",
    "model_summary",
    "read_header",
    "validate_adapter",
    "validate_model",
]
