"""Shared fixtures: ``fx`` (test GGUF files by name), ``engine`` (a default Engine),
``real_model`` (the pinned real models) and ``llama_cpp_vocab`` (llama.cpp's vocabulary files);
for the Engine's own logic against llamart.testing.FakeBackend (tests/test_engine_*.py,
tests/test_cli.py): ``fake`` (the backend), ``fake_files`` (tiny GGUF models and adapters the
stdlib writer makes), ``fake_engine`` (an Engine on ``fake``, checked for protocol violations
after the test) and ``fake_loaded`` (the same with a model loaded, n_ctx 64).

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

from llamart import Engine
from llamart.testing import FakeBackend
from llamart.testing.gguf_writer import write_adapter, write_model

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


# ---- the Engine on the fake backend ----

@pytest.fixture
def fake_files(tmp_path: Path) -> dict[str, str]:
    """Tiny GGUF files by name: two models, three adapters that fit them, two that do not
    (``bad_shape``, ``bad_arch``), a non-GGUF file, a missing path and the folder (``dir``)."""
    d = str(tmp_path)
    j = os.path.join
    garbage = j(d, "garbage.gguf")
    with open(garbage, "wb") as f:
        f.write(b"this is not a gguf file at all" * 4)
    return {
        "model": write_model(j(d, "model.gguf")),
        "model2": write_model(j(d, "model2.gguf")),
        "a": write_adapter(j(d, "a.gguf"), task="domain"),
        "b": write_adapter(j(d, "b.gguf"), rank=4, alpha=8.0, targets=("attn_q",)),
        "c": write_adapter(j(d, "c.gguf"), rank=1, targets=("attn_v",)),
        "bad_shape": write_adapter(j(d, "bad_shape.gguf"), n_in=12),
        "bad_arch": write_adapter(j(d, "bad_arch.gguf"), arch="gpt2"),
        "garbage": garbage,
        "missing": j(d, "missing.gguf"),
        "dir": d,
    }


@pytest.fixture
def fake() -> FakeBackend:
    return FakeBackend()


@pytest.fixture
def fake_engine(fake: FakeBackend) -> Iterator[Engine]:
    e = Engine(fake)
    yield e
    e.dispose()
    assert fake.violations == []


@pytest.fixture
def fake_loaded(fake_engine: Engine, fake_files: dict[str, str]) -> Engine:
    fake_engine.load_model(fake_files["model"], n_ctx=64)
    return fake_engine
