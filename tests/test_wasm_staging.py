"""How the emscripten FFI adapter stages a model file into the WebAssembly module's own file
system (llamart/bindings/ffi_emscripten.py, ``EmscriptenFfi.staged``).

The module's FS is a stand-in here (the calls ``staged`` makes: analyzePath, mkdir, open,
write, close, unlink, with emscripten's ENOENT on a missing file), so this runs natively as
well as in Pyodide; the real module's copy is exercised by tests/test_wasm_web.py.
"""

from __future__ import annotations

import errno
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from llamart.bindings.ffi_emscripten import EmscriptenFfi


class FakeFS:
    """The part of emscripten's FS API ``staged`` uses, over a dict of files."""

    def __init__(self, fail_open: Exception | None = None) -> None:
        self.files: dict[str, bytearray] = {}
        self.dirs: set[str] = set()
        self.fail_open = fail_open
        self.calls: list[str] = []

    def analyzePath(self, path: str) -> Any:  # noqa: N802 (emscripten's name)
        return types.SimpleNamespace(exists=path in self.files or path in self.dirs)

    def mkdir(self, path: str) -> None:
        self.dirs.add(path)

    def open(self, path: str, mode: str) -> str:
        self.calls.append("open")
        if self.fail_open is not None:
            raise self.fail_open
        self.files[path] = bytearray()
        return path

    def write(self, stream: str, data: Any, offset: int, length: int) -> None:
        raw = data.to_bytes() if hasattr(data, "to_bytes") else bytes(data)  # a JS Uint8Array
        self.files[stream] += raw[offset:offset + length]

    def close(self, stream: str) -> None:
        self.calls.append("close")

    def unlink(self, path: str) -> None:
        self.calls.append("unlink")
        if path not in self.files:
            raise OSError(errno.ENOENT, "FS error: no such file", path)
        del self.files[path]


@pytest.fixture
def to_js(monkeypatch: pytest.MonkeyPatch) -> None:
    """``pyodide.ffi.to_js`` (bytes as they are) where this is not Pyodide."""
    if sys.platform == "emscripten":
        return
    pyodide = types.ModuleType("pyodide")
    ffi = types.ModuleType("pyodide.ffi")
    ffi.to_js = lambda data: data  # type: ignore[attr-defined]
    pyodide.ffi = ffi  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "pyodide", pyodide)
    monkeypatch.setitem(sys.modules, "pyodide.ffi", ffi)


def _ffi(fs: FakeFS) -> EmscriptenFfi:
    return EmscriptenFfi(types.SimpleNamespace(FS=fs))


def test_the_copy_exists_during_the_load_only(tmp_path: Path, to_js: None) -> None:
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF" + bytes(range(200)))
    fs = FakeFS()
    with _ffi(fs).staged(str(model)):
        assert fs.files[str(model)] == model.read_bytes()
        assert str(tmp_path) in fs.dirs
    assert fs.files == {} and fs.calls == ["open", "close", "unlink"]


def test_a_failed_load_still_removes_the_copy(tmp_path: Path, to_js: None) -> None:
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    fs = FakeFS()
    with pytest.raises(RuntimeError, match="llama.cpp refused it"), _ffi(fs).staged(str(model)):
        raise RuntimeError("llama.cpp refused it")
    assert fs.files == {}


def test_a_failed_open_reports_its_own_error(tmp_path: Path, to_js: None) -> None:
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    fs = FakeFS(fail_open=OSError(errno.ENOSPC, "FS error: no space left"))
    with pytest.raises(OSError, match="no space left") as info, _ffi(fs).staged(str(model)):
        pytest.fail("the load must not run without its copy")
    assert info.value.errno == errno.ENOSPC  # not the cleanup's ENOENT
    assert fs.calls == ["open"] and fs.files == {}


def test_a_file_the_module_sees_is_not_copied(tmp_path: Path, to_js: None) -> None:
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    fs = FakeFS()
    fs.files[str(model)] = bytearray(b"shared")
    with _ffi(fs).staged(str(model)):
        pass
    assert fs.calls == [] and fs.files[str(model)] == b"shared"
