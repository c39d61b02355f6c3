"""Where the pinned llama.cpp source lies in a checkout (values of cmake/llama_cpp_pin.cmake).

The native build extracts the pinned sdist into ``<checkout>/.cache/<sdist name>-<version>/``;
its ``vendor/llama.cpp/models/`` holds llama.cpp's real vocabulary files with their tokenizer
test cases (``ggml-vocab-*.gguf`` + ``.inp``/``.out``).
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PIN_FILE = REPO / "cmake" / "llama_cpp_pin.cmake"


def pin_values(pin_file: Path = PIN_FILE) -> dict[str, str]:
    """The ``set(NAME "value")`` pairs of the pin file."""
    return dict(re.findall(r'set\((\w+)\s+"([^"]*)"\)', pin_file.read_text()))


def sdist_dir(repo: Path = REPO) -> Path:
    """Where the build extracts the pinned sdist: ``.cache/<package>-<version>`` (the package
    name with ``_`` for ``-``); it may not exist before a build."""
    pin = pin_values(repo / "cmake" / "llama_cpp_pin.cmake")
    sdist = pin["LLAMART_LLAMA_SDIST_PACKAGE"].replace("-", "_")
    return repo / ".cache" / f"{sdist}-{pin['LLAMART_LLAMA_SDIST_VERSION']}"


def source_dir(repo: Path = REPO) -> Path:
    """The extracted llama.cpp tree of the pinned sdist (it may not exist before a build)."""
    return sdist_dir(repo) / "vendor" / "llama.cpp"


def vocab_dir(repo: Path = REPO) -> Path:
    """llama.cpp's ``models/`` folder (vocabulary-only GGUF files and their test cases)."""
    return source_dir(repo) / "models"
