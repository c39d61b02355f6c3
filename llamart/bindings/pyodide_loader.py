"""Load the llamart WebAssembly module from the installed package, inside stock Pyodide.

The Pyodide wheel (``python -m wasm.wheel``) carries both emscripten builds in
``llamart/_wasm/``. The first ``Engine()`` (through :func:`ensure_module`) reads the glue text,
the ``.wasm`` bytes and, for the pthreads build, its worker script from Pyodide's file system,
makes the module synchronously with ``pyodide_loader.js`` and registers it as the Python
module ``llamart_wasm``. Importing llamart loads nothing.

Which build: the pthreads one where SharedArrayBuffer exists (Node; a cross-origin isolated
page) and the call can wait for its pool (in a browser: JSPI, i.e. code run by
``runPythonAsync``, PyScript, a notebook cell; or ``await llamart.web.load_wasm()`` first),
else the single-threaded one; ``LLAMART_WASM_THREADS=0``/``1`` forces it. Where the engine
validates relaxed SIMD and the wheel carries them (``python -m wasm.wheel --relaxed``), the
relaxed-SIMD variant of that build is loaded instead (``LLAMART_WASM_RELAXED_SIMD=0`` keeps
the plain one). A module registered earlier (``wasm/llamart_pyodide.js``) is used as is.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

MODULE_NAME = "llamart_wasm"
WASM_DIR = Path(__file__).resolve().parents[1] / "_wasm"
LOADER_JS = Path(__file__).with_suffix(".js")
POOL_TIMEOUT_MS = 60_000  # a browser's thread pool starting (one worker per core beyond one)
# the files of each build, in llamart/_wasm/ (python -m wasm.build names them)
FILES = {"single": ("llamart_wasm.js", "llamart_wasm.wasm", None),
         "threads": ("llamart_wasm_mt.js", "llamart_wasm_mt.wasm", "llamart_wasm_mt.worker.js"),
         # optional (python -m wasm.build --relaxed): loaded where relaxed SIMD validates
         "single-relaxed": ("llamart_wasm_relaxed.js", "llamart_wasm_relaxed.wasm", None),
         "threads-relaxed": ("llamart_wasm_mt_relaxed.js", "llamart_wasm_mt_relaxed.wasm",
                             "llamart_wasm_mt_relaxed.worker.js")}


class WasmLoadError(ImportError):
    """The module could not be made here; the message names what is missing."""


def bundled() -> bool:
    """Does this installation carry the modules (the Pyodide wheel)?"""
    return WASM_DIR.is_dir()


@functools.cache
def _loader() -> Any:
    from pyodide.code import run_js  # type: ignore[import-not-found]

    if not LOADER_JS.is_file():
        raise WasmLoadError(f"llamart: {LOADER_JS} is missing from the installed package")
    return run_js(LOADER_JS.read_text(encoding="utf-8"))


def choose_build(threads_available: bool, forced: str | None = None) -> str:
    """``"threads"`` or ``"single"``: ``forced`` (``"1"``/``"0"``) wins, else what runs here."""
    if forced in ("0", "1"):
        if forced == "1" and not threads_available:
            raise WasmLoadError("llamart: LLAMART_WASM_THREADS=1, but SharedArrayBuffer is not "
                                "available (serve the page with Cross-Origin-Opener-Policy: "
                                "same-origin and Cross-Origin-Embedder-Policy: require-corp)")
        return "threads" if forced == "1" else "single"
    return "threads" if threads_available else "single"


def with_relaxed(build: str, relaxed_available: bool, forced: str | None = None) -> str:
    """``build``'s relaxed-SIMD variant where the engine runs it and the package carries it
    (``forced`` ``"0"`` keeps ``build``), else ``build``."""
    name = f"{build}-relaxed"
    if forced == "0" or not relaxed_available or not (WASM_DIR / FILES[name][1]).is_file():
        return build
    return name


def _read(name: str | None, text: bool) -> Any:
    """A module file's contents as JS (str, or a Uint8Array read by Pyodide's FS: no copy
    through Python); WasmLoadError naming it when it is missing."""
    if name is None:
        return None
    path = WASM_DIR / name
    if not path.is_file():
        raise WasmLoadError(f"llamart: the WebAssembly module file {name} is missing from the "
                            f"installed package ({WASM_DIR}): reinstall the llamart Pyodide "
                            "wheel (python -m wasm.wheel builds it)")
    if text:
        return path.read_text(encoding="utf-8")
    import pyodide_js  # type: ignore[import-not-found]

    return pyodide_js.FS.readFile(str(path))


def _make(loader: Any, build: str) -> Any:
    """The module of ``build``, made from the package's files (its pool maybe not started)."""
    import js  # type: ignore[import-not-found]
    from pyodide.ffi import JsException, to_js  # type: ignore[import-not-found]

    build = with_relaxed(build, bool(loader.relaxedSimdAvailable()),
                         os.environ.get("LLAMART_WASM_RELAXED_SIMD"))
    glue, wasm, worker = FILES[build]
    opts = {"name": glue, "glue": _read(glue, True), "wasm": _read(wasm, False),
            "worker": _read(worker, True)}
    try:
        module = loader.load(to_js(opts, dict_converter=js.Object.fromEntries))
    except JsException as exc:
        raise WasmLoadError(f"llamart: cannot load the WebAssembly module {glue}: "
                            f"{getattr(exc, 'message', exc)}") from exc
    module.llamartRelaxedSimd = build.endswith("-relaxed")
    return module


def _checked_loader() -> Any:
    loader = _loader()
    lacking = str(loader.missing())
    if lacking:
        raise WasmLoadError(f"llamart: this Pyodide runtime cannot run the llamart WebAssembly "
                            f"module: it lacks {lacking}")
    return loader


def _can_block_on_js() -> bool:
    """Can this call wait for a JS promise (Node needs not; a browser needs JSPI here)?"""
    from pyodide.ffi import can_run_sync  # type: ignore[import-not-found]

    return bool(can_run_sync())


def load(build: str | None = None) -> Any:
    """Make the module from the package's files and register it as ``llamart_wasm``.

    A browser starts the pthreads pool only when the caller yields to the event loop: from a
    synchronous call that cannot wait (no JSPI, or not under ``runPythonAsync``/an async
    task) the single-threaded module is loaded instead (:func:`load_async` has no such limit).
    """
    from pyodide.ffi import register_js_module, run_sync  # type: ignore[import-not-found]

    loader = _checked_loader()
    in_node = bool(loader.IN_NODE)
    can_wait = in_node or _can_block_on_js()
    forced = os.environ.get("LLAMART_WASM_THREADS")
    if forced == "1" and not can_wait:
        raise WasmLoadError("llamart: LLAMART_WASM_THREADS=1, but this synchronous call cannot "
                            "wait for the thread pool to start: make the Engine from async code "
                            "(runPythonAsync, top-level await) or `await llamart.web.load_wasm()`"
                            " first")
    build = build or choose_build(bool(loader.threadsAvailable()) and can_wait, forced)
    module = _make(loader, build)
    if build == "threads" and not in_node:
        try:
            run_sync(loader.poolReady(module, POOL_TIMEOUT_MS))
        except Exception as exc:
            raise WasmLoadError(f"llamart: {getattr(exc, 'message', exc)}") from exc
    register_js_module(MODULE_NAME, module)
    return module


async def load_async(build: str | None = None) -> Any:
    """:func:`load` for async code: waits for the pthreads pool without JSPI."""
    from pyodide.ffi import register_js_module  # type: ignore[import-not-found]

    loader = _checked_loader()
    build = build or choose_build(bool(loader.threadsAvailable()),
                                  os.environ.get("LLAMART_WASM_THREADS"))
    module = _make(loader, build)
    try:
        await loader.poolReady(module, POOL_TIMEOUT_MS)
    except Exception as exc:
        raise WasmLoadError(f"llamart: {getattr(exc, 'message', exc)}") from exc
    register_js_module(MODULE_NAME, module)
    return module


def ensure_module() -> Any:
    """The registered ``llamart_wasm`` module, loaded from the package on first use."""
    try:
        import llamart_wasm  # type: ignore[import-not-found]
    except ImportError:
        return load()
    return llamart_wasm


def share(module: Any, path: str) -> Callable[[], None] | None:
    """Make ``path`` of Pyodide's FS readable in ``module``'s FS without a copy (a NODEFS or
    WORKERFS mount mounted again, a MEMFS/IDBFS file's contents shared); returns the undo,
    or None when it cannot be shared (the caller copies)."""
    if sys.platform != "emscripten" or not hasattr(module.FS, "filesystems"):
        return None  # not Pyodide, or not an emscripten FS (a stand-in): copy
    import pyodide_js  # type: ignore[import-not-found]

    undo = _loader().share(pyodide_js.FS, module.FS, path)
    return None if undo is None else lambda: undo()


async def ensure_module_async() -> Any:
    """:func:`ensure_module` for async code (:func:`load_async`)."""
    try:
        import llamart_wasm  # type: ignore[import-not-found]
    except ImportError:
        return await load_async()
    return llamart_wasm
