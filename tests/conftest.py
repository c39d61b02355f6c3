"""Shared fixtures: ``fx`` (test GGUF files by name), ``engine`` (a default Engine),
``real_model`` (the pinned real models) and ``llama_cpp_vocab`` (llama.cpp's vocabulary files).

``fx`` uses the folder in env LLAMART_FIXTURES (with manifest.json, as written by
``python -m llamart.testing.fixtures DIR``) when set, as in the Pyodide runs; otherwise it
builds the fixtures once per session (that branch alone needs numpy and gguf).

In Pyodide the runner (tools/pyodide_runner) verifies the real models on the host, makes them
visible at their host paths and names them in env LLAMART_REAL_MODELS (JSON {name: path}); it
does the same for the pinned llama.cpp source's ``models/`` folder (env LLAMART_LLAMA_CPP_VOCAB).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ["GGML_NO_BACKTRACE"] = "1"  # a ggml abort must not attach gdb


@pytest.fixture(scope="session")
def fx(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Fixture name -> absolute path of the file (models, adapters, bad files)."""
    folder = os.environ.get("LLAMART_FIXTURES")
    if folder:
        with open(os.path.join(folder, "manifest.json")) as f:
            manifest = json.load(f)
        return {k: os.path.abspath(os.path.join(folder, v)) for k, v in manifest.items()}
    from llamart.testing.fixtures import build

    return build(tmp_path_factory.mktemp("fixtures"))


@pytest.fixture
def engine() -> Iterator[Any]:
    """An Engine on the platform's default backend, disposed after the test."""
    from llamart import Engine

    eng = Engine()
    try:
        yield eng
    finally:
        eng.dispose()


@pytest.fixture(scope="session")
def real_model() -> Callable[[str], str]:
    """``real_model(name)``: the path of a pinned real model (llamart.pinned_models), verified;
    the test skips, saying how to fetch it, when it is not in the cache."""
    env = os.environ.get("LLAMART_REAL_MODELS")
    if env is not None:
        found: dict[str, str] = json.loads(env)
        how = "the Pyodide runner found no verified copy on the host: run `make models`"
    else:
        from llamart import pinned_models

        found = {name: str(path) for name in pinned_models.PINS
                 if (path := pinned_models.cached_path(name)) is not None}
        how = "not in the model cache: run `make models`"

    def get(name: str) -> str:
        if name not in found:
            pytest.skip(f"real model {name}: {how} (python -m llamart models fetch {name})")
        return found[name]

    return get


@pytest.fixture(scope="session")
def llama_cpp_vocab() -> Path:
    """llama.cpp's ``models/`` folder of the pinned source (vocabulary-only GGUF files with
    their tokenizer test cases); skips when the source is not extracted (no native build)."""
    env = os.environ.get("LLAMART_LLAMA_CPP_VOCAB")
    if env is not None:
        folder = Path(env)
    else:
        from tools.llama_cpp_pin import vocab_dir

        folder = vocab_dir()
    if not folder.is_dir():
        pytest.skip(f"the pinned llama.cpp source is not extracted ({folder}): run `make native`")
    return folder
