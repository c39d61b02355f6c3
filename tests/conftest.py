"""Shared fixtures: ``fx`` (test GGUF files by name) and ``engine`` (a default Engine).

``fx`` uses the folder in env LLAMART_FIXTURES (with manifest.json, as written by
``python -m llamart.testing.fixtures DIR``) when set, as in the Pyodide runs; otherwise it
builds the fixtures once per session (that branch alone needs numpy and gguf).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
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
