"""The WebAssembly backend and the llamart.web helpers, inside Pyodide (Node and Chromium).

Natively these tests are skipped (they need Pyodide and the registered `llamart_wasm` module);
the runner ``python -m tools.pyodide_runner --runtime node|chromium`` runs them.
"""

from __future__ import annotations

import logging
import os
import sys

import pytest

pytestmark = pytest.mark.skipif(sys.platform != "emscripten", reason="needs Pyodide (wasm)")

PROMPT = "Once upon a time"


def _runtime() -> str:
    import js  # type: ignore[import-not-found]

    process = getattr(js, "process", None)
    return "node" if process is not None and getattr(process.versions, "node", None) else "browser"


def _greedy(path: str) -> str:
    from llamart import Engine

    with Engine() as engine:
        engine.load_model(path, n_ctx=128)
        return engine.complete(PROMPT, max_tokens=12, temperature=0.0)


@pytest.fixture(scope="module")
def reference(fx: dict[str, str]) -> str:
    text = _greedy(fx["model_f32"])
    assert text
    return text


def test_capabilities() -> None:
    from llamart import Engine
    from llamart.bindings.wasm import LORA_REASON

    with Engine() as engine:
        caps = engine.capabilities
    assert caps.backend == "wasm"
    assert caps.lora is False and caps.lora_reason == LORA_REASON
    import llamart_wasm  # type: ignore[import-not-found]

    assert caps.mmap is False
    assert caps.threads is (llamart_wasm.llamartBuild == "threads")  # tests/test_wasm_threads.py
    assert "WASM_SIMD = 1" in caps.system_info


def test_adapter_calls_are_unsupported() -> None:
    from llamart.bindings.base import BackendError, ErrorKind
    from llamart.bindings.wasm import WasmBackend

    backend = WasmBackend()
    try:
        for call in (lambda: backend.load_adapter("/x.gguf"), lambda: backend.free_adapter(None),
                     lambda: backend.apply_adapters([]), lambda: backend.adapter_metadata(None)):
            with pytest.raises(BackendError) as info:
                call()
            assert info.value.kind == ErrorKind.UNSUPPORTED
    finally:
        backend.dispose()


def test_llama_cpp_reason_and_log_reach_python(fx: dict[str, str],
                                               caplog: pytest.LogCaptureFixture) -> None:
    from llamart.bindings.base import BackendError, ErrorKind
    from llamart.bindings.wasm import WasmBackend
    from llamart.params import ModelParams

    backend = WasmBackend()
    caplog.set_level(logging.WARNING, logger="llamart.llama_cpp")
    try:
        with pytest.raises(BackendError) as info:
            backend.load_model(fx["bad_truncated"], ModelParams(n_ctx=128), 1)
    finally:
        backend.dispose()
    assert info.value.kind == ErrorKind.LOAD
    assert "could not load" in info.value.reason
    assert len(info.value.reason.splitlines()) > 1  # llama.cpp's own lines follow ours
    assert any(r.name == "llamart.llama_cpp" for r in caplog.records)


def test_file_only_in_pyodide_fs_is_staged_and_removed(fx: dict[str, str], tmp_path,
                                                       reference: str) -> None:
    from llamart.bindings.wasm import wasm_module

    copy = tmp_path / "only_here.gguf"
    with open(fx["model_f32"], "rb") as src:
        copy.write_bytes(src.read())
    assert not wasm_module().FS.analyzePath(str(copy)).exists
    assert _greedy(str(copy)) == reference
    assert not wasm_module().FS.analyzePath(str(copy)).exists  # the staged copy is gone


def test_write_bytes(fx: dict[str, str], reference: str) -> None:
    from llamart import web

    with open(fx["model_f32"], "rb") as f:
        path = web.write_bytes(f.read(), name="from_bytes.gguf", folder="/models/bytes")
    assert path == "/models/bytes/from_bytes.gguf" and os.path.getsize(path) > 0
    assert _greedy(path) == reference
    with pytest.raises(ValueError, match="a file name"):
        web.write_bytes(b"", name="a/b.gguf")


@pytest.mark.skipif(sys.platform == "emscripten" and _runtime() != "node", reason="Node only")
def test_mount_host_path(fx: dict[str, str], reference: str) -> None:
    from llamart import web
    from llamart.bindings.wasm import wasm_module

    host = fx["model_f32"]  # the runner mounts the checkout at its host path
    path = web.mount_host_path(host, "/hostmount/model_f32.gguf")
    assert wasm_module().FS.analyzePath(path).exists and os.path.exists(path)
    assert _greedy(path) == reference
    with pytest.raises(FileNotFoundError, match="no_such.gguf"):
        web.mount_host_path(os.path.join(os.path.dirname(host), "no_such.gguf"),
                            "/hostmount2/no_such.gguf")


@pytest.mark.skipif(sys.platform == "emscripten" and _runtime() != "browser",
                    reason="browser worker only (WORKERFS)")
def test_mount_blob(fx: dict[str, str], reference: str) -> None:
    import js  # type: ignore[import-not-found]
    from pyodide.ffi import to_js  # type: ignore[import-not-found]

    from llamart import web

    with open(fx["model_f32"], "rb") as f:
        blob = js.Blob.new([to_js(f.read())])
    path = web.mount_blob(blob, name="blob.gguf")
    assert path.endswith("/blob.gguf") and os.path.getsize(path) == blob.size
    assert _greedy(path) == reference

