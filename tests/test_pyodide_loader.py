"""llamart/bindings/pyodide_loader.py: the module loaded from the installed Pyodide wheel.

In Pyodide (the runner installs the wheel with micropip): a MEMFS file and a NODEFS mount are
shared with the module without a copy and load; a missing path fails as natively; a module
file missing from the package is named. Natively: which build is chosen.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest

from llamart.bindings import pyodide_loader

in_pyodide = pytest.mark.skipif(sys.platform != "emscripten", reason="Pyodide only")


def test_choose_build() -> None:
    assert pyodide_loader.choose_build(True) == "threads"
    assert pyodide_loader.choose_build(False) == "single"
    assert pyodide_loader.choose_build(True, "0") == "single"
    assert pyodide_loader.choose_build(True, "1") == "threads"
    with pytest.raises(pyodide_loader.WasmLoadError, match="Cross-Origin-Opener-Policy"):
        pyodide_loader.choose_build(False, "1")


def test_the_relaxed_build_only_where_it_runs_and_is_carried(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pyodide_loader, "WASM_DIR", tmp_path)
    assert pyodide_loader.with_relaxed("threads", True) == "threads"  # not in the package
    for build in ("single", "threads"):
        (tmp_path / pyodide_loader.FILES[f"{build}-relaxed"][1]).write_bytes(b"")
        assert pyodide_loader.with_relaxed(build, True) == f"{build}-relaxed"
        assert pyodide_loader.with_relaxed(build, False) == build  # the engine lacks it
        assert pyodide_loader.with_relaxed(build, True, "0") == build  # forced off


def _node(fs: Any, path: str) -> Any:
    import js  # type: ignore[import-not-found]

    return fs.lookupPath(path, js.Object.fromEntries([["follow", True]])).node


@in_pyodide
def test_a_memfs_file_is_shared_not_copied(fx: dict[str, str], tmp_path: Path) -> None:
    import pyodide_js  # type: ignore[import-not-found]

    from llamart import Engine
    from llamart.bindings.ffi_emscripten import wasm_module

    path = f"/tmp/llamart-memfs-{os.getpid()}/model.gguf"
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Path(path).write_bytes(Path(fx["model_f32"]).read_bytes())  # Pyodide's MEMFS
    module = wasm_module()
    undo = pyodide_loader.share(module, path)
    assert undo is not None
    try:  # the module's node holds the very same JS array: nothing was copied
        assert _node(module.FS, path).contents == _node(pyodide_js.FS, path).contents
    finally:
        undo()
    assert not module.FS.analyzePath(path).exists
    with Engine() as engine:
        engine.load_model(path, n_ctx=64)
        assert engine.tokenize("hello")
    assert not module.FS.analyzePath(path).exists  # undone after the load


@in_pyodide
def test_a_missing_path_fails_as_natively(tmp_path: Path) -> None:
    from llamart import Engine

    with Engine() as engine, pytest.raises(FileNotFoundError):
        engine.load_model(str(tmp_path / "absent.gguf"))


@in_pyodide
def test_a_missing_module_file_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("llamart_wasm.js",):
        (tmp_path / name).write_text("var LlamartWasm;")
    monkeypatch.setattr(pyodide_loader, "WASM_DIR", tmp_path)
    with pytest.raises(pyodide_loader.WasmLoadError, match=r"llamart_wasm\.wasm is missing"):
        pyodide_loader.load("single")


@in_pyodide
def test_the_registered_module_is_the_one_the_loader_made() -> None:
    import llamart_wasm  # type: ignore[import-not-found]

    from llamart.bindings.ffi_emscripten import wasm_module

    assert pyodide_loader.bundled()
    assert wasm_module() is llamart_wasm or wasm_module() == llamart_wasm
    assert str(llamart_wasm.llamartBuild) in ("threads", "single")
