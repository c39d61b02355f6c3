"""Getting a model file to the WebAssembly backend (inside Pyodide, Node or a browser).

The llamart WebAssembly module keeps its own file system beside Pyodide's. Each helper here
makes a file readable at the same path in both (Python reads the GGUF header to validate it,
llama.cpp reads the rest) and returns that path for ``Engine.load_model``:

- :func:`mount_host_path` (Node): mounts the host folder with NODEFS: no copy at all;
- :func:`mount_blob` (browser worker): mounts a ``File``/``Blob`` with WORKERFS: read on demand;
- :func:`write_bytes` and :func:`fetch_url`: write the bytes into both file systems (the model
  then occupies memory twice: prefer a mount for big models).

A path of Pyodide's own file system also works as is (``Engine.load_model`` shares it with the
module: bindings/pyodide_loader.py). :func:`load_wasm` loads the module ahead of ``Engine()``
from async code, so a browser page gets the pthreads module even where ``Engine()`` is later
made from synchronous code.
"""

from __future__ import annotations

import os
import posixpath
import sys
from typing import Any

from .bindings.wasm import wasm_module

_mounts = 0


def _pyodide_fs() -> Any:
    import pyodide_js  # type: ignore[import-not-found]

    return pyodide_js.FS


def _file_systems() -> list[Any]:
    """Pyodide's FS and the llamart module's FS (one object if they are the same)."""
    fs, mod = _pyodide_fs(), wasm_module().FS
    return [fs] if fs == mod else [fs, mod]


def _mkdir_tree(fs: Any, path: str) -> None:
    cur = ""
    for part in [p for p in path.split("/") if p]:
        cur += "/" + part
        if not fs.analyzePath(cur).exists:
            fs.mkdir(cur)


def _fresh_dir(base: str) -> str:
    """A new, empty mount point under ``base``."""
    global _mounts
    _mounts += 1
    return posixpath.join(base, str(_mounts))


def _require_pyodide(what: str) -> None:
    if sys.platform != "emscripten":
        raise RuntimeError(f"{what} is for the WebAssembly backend inside Pyodide; natively, "
                           "pass the file path to Engine.load_model directly")


def mount_host_path(host_path: str, fs_path: str | None = None) -> str:
    """Node only: make host file ``host_path`` readable at ``fs_path`` (default: the same path).

    Mounts its folder with NODEFS in both file systems (nothing is copied). Returns the path.
    """
    _require_pyodide("mount_host_path")
    import js  # type: ignore[import-not-found]

    process = getattr(js, "process", None)
    if process is None or not getattr(process.versions, "node", None):
        raise RuntimeError("mount_host_path needs Node (NODEFS); in a browser use mount_blob")
    host_dir, name = posixpath.split(posixpath.abspath(host_path))
    fs_path = fs_path or posixpath.join(host_dir, name)
    fs_dir = posixpath.dirname(fs_path)
    if posixpath.basename(fs_path) != name:
        raise ValueError(f"{fs_path}: the file name must stay {name!r} (the folder is mounted)")
    for fs in _file_systems():
        if fs.analyzePath(fs_path).exists:
            continue
        _mkdir_tree(fs, fs_dir)
        fs.mount(fs.filesystems.NODEFS, _js_object(root=host_dir), fs_dir)
    if not os.path.exists(fs_path):
        raise FileNotFoundError(f"{host_path}: no such file on the host")
    return fs_path


def mount_blob(blob: Any, name: str | None = None, folder: str = "/models") -> str:
    """Browser worker only: mount a JS ``File`` or ``Blob`` read-only (WORKERFS, no copy).

    Returns the path ``<folder>/<n>/<name>`` (``name`` defaults to the File's own name).
    """
    _require_pyodide("mount_blob")
    import js  # type: ignore[import-not-found]

    name = name or str(getattr(blob, "name", "") or "model.gguf")
    if "/" in name:
        raise ValueError(f"{name}: a file name, not a path")
    fs_dir = _fresh_dir(folder)
    blobs = js.Array.new()
    blobs.push(_js_object(name=name, data=blob))
    for fs in _file_systems():
        _mkdir_tree(fs, fs_dir)
        fs.mount(fs.filesystems.WORKERFS, _js_object(blobs=blobs), fs_dir)
    return posixpath.join(fs_dir, name)


def write_bytes(data: bytes, name: str = "model.gguf", folder: str = "/models") -> str:
    """Write a model's bytes to ``<folder>/<name>`` in both file systems; returns the path."""
    _require_pyodide("write_bytes")
    from pyodide.ffi import to_js  # type: ignore[import-not-found]

    if "/" in name:
        raise ValueError(f"{name}: a file name, not a path")
    path = posixpath.join(folder, name)
    payload = to_js(bytes(data))
    for fs in _file_systems():
        _mkdir_tree(fs, folder)
        fs.writeFile(path, payload)
    return path


async def fetch_url(url: str, name: str | None = None, folder: str = "/models") -> str:
    """Download a model over HTTP(S) with ``fetch`` and write it to both file systems."""
    _require_pyodide("fetch_url")
    import js  # type: ignore[import-not-found]

    resp = await js.fetch(url)
    if not resp.ok:
        raise OSError(f"{url}: HTTP {resp.status} {resp.statusText}")
    data = (await resp.arrayBuffer()).to_bytes()
    name = name or posixpath.basename(url.split("?")[0]) or "model.gguf"
    return write_bytes(data, name=name, folder=folder)


async def load_wasm() -> str:
    """Load the WebAssembly module from the installed Pyodide wheel now (waiting for its thread
    pool where threads can run); returns ``"threads"`` or ``"single"``."""
    _require_pyodide("load_wasm")
    from .bindings.pyodide_loader import ensure_module_async

    return str((await ensure_module_async()).llamartBuild)


def _js_object(**fields: Any) -> Any:
    """A plain JS object (emscripten's mount options are read as object properties)."""
    import js  # type: ignore[import-not-found]
    from pyodide.ffi import to_js  # type: ignore[import-not-found]

    return to_js(fields, dict_converter=js.Object.fromEntries)
