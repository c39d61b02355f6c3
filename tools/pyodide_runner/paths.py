"""Where the Pyodide runner finds things, and which folders a run makes visible in Pyodide."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from llamart.bindings.pyodide_loader import FILES

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / ".cache"
ARTIFACTS = REPO / "tests" / ".artifacts"
PYODIDE_DIR = REPO / "node_modules" / "pyodide"
RUNNER_DIR = Path(__file__).resolve().parent
# always visible, even for a test file outside tests/: the package under test (with its test
# kit, llamart.testing) and the developer tools the suite imports (tools/ imports no tests/)
BASE_TREES = ("llamart", "tools")




def _files(build: str) -> dict[str, str]:
    """{glue, wasm[, worker]} of one build, as the package's loader names them (its FILES)."""
    return {k: n for k, n in zip(("glue", "wasm", "worker"), FILES[build], strict=True) if n}


# the files of the two WebAssembly builds (python -m wasm.build), all in wasm_dir()
WASM_FILES = {"single": _files("single"), "threads": _files("threads")}
# their relaxed-SIMD variants (python -m wasm.build --relaxed), loaded where the engine has it
RELAXED_FILES = {"single": _files("single-relaxed"), "threads": _files("threads-relaxed")}


def wasm_dir() -> Path:
    """Folder holding llamart_wasm.js and llamart_wasm.wasm ($LLAMART_WASM_DIR overrides)."""
    return Path(os.environ.get("LLAMART_WASM_DIR") or REPO / "build-wasm" / "wasm").resolve()


def resolve_args(args: Sequence[str], cwd: Path) -> tuple[list[str], list[Path]]:
    """The pytest arguments as Pyodide must see them, and the folders they name.

    An argument naming an existing path (``dir``, ``file.py`` or ``file.py::test``, relative
    to ``cwd``) is rewritten relative to the checkout when inside it (test ids stay the same)
    and absolute otherwise (Pyodide runs in the checkout). A file brings its whole folder (its
    conftest.py and data files beside it); a folder brings itself. Other arguments (options and
    their values) pass unchanged.
    """
    out: list[str] = []
    trees: list[Path] = []
    for arg in args:
        path_part, sep, rest = arg.partition("::")
        path = (cwd / path_part).resolve() if path_part and not arg.startswith("-") else None
        if path is None or not path.exists():
            out.append(arg)
            continue
        shown = path.relative_to(REPO).as_posix() if path.is_relative_to(REPO) else str(path)
        out.append(shown + sep + rest)
        trees.append(path if path.is_dir() else path.parent)
    return out, trees


def visible_trees(named: Sequence[Path]) -> list[Path]:
    """The folders a run needs in Pyodide: :data:`BASE_TREES` and what the arguments name,
    without folders already inside another one."""
    candidates = sorted({*(REPO / t for t in BASE_TREES), *named}, key=lambda p: len(p.parts))
    out: list[Path] = []
    for tree in candidates:
        if not any(tree.is_relative_to(kept) for kept in out):
            out.append(tree)
    return out
