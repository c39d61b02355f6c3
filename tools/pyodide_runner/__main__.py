"""Run the pytest suite inside Pyodide, under Node or in headless Chromium.

    python -m tools.pyodide_runner --runtime node|chromium [pytest args ...]

Any test file or folder runs, inside the checkout or not: the folders the pytest arguments
name (a file brings the folder it is in) are mounted (Node) or shipped (Chromium) at their host
paths, with llamart/ and tools/. Steps: make the test fixtures natively (``python -m
llamart.testing.fixtures``), fetch pytest's pure-Python wheels once into ``.cache/`` (``pip
download``), then start Pyodide (npm package,
pinned in package.json: run ``npm ci``), unpack the wheels, load the llamart WebAssembly module
(``build-wasm/wasm`` or ``$LLAMART_WASM_DIR``) as ``import llamart_wasm``, and run
``pytest.main(args)`` with the checkout at its host path as the working directory. The real
models and vocabulary files keep their host paths: NODEFS mounts in Node; in Chromium the
server serves each file and the worker mounts them as Blobs (WORKERFS: read on demand, never
copied into the Pyodide heap; llama.cpp reads a model into the module's heap when it loads). Output
streams live; junit xml lands in ``tests/.artifacts/results-<runtime>.xml`` (``--results``);
the exit code is pytest's.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from . import paths
from .prepare import (
    ensure_pyodide,
    ensure_wheels,
    find_wasm,
    host_data,
    make_fixtures,
    runtime_wheels,
)
from .server import run_chromium


def run_node(config: dict) -> int:
    """Run the suite in Pyodide under Node; returns pytest's exit code."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(config, f)
    try:
        runner = paths.RUNNER_DIR / "run_node.cjs"
        return subprocess.run(["node", str(runner), f.name], cwd=paths.REPO).returncode
    finally:
        os.unlink(f.name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.pyodide_runner", description=__doc__,
                                     allow_abbrev=False,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runtime", choices=("node", "chromium"), required=True)
    parser.add_argument("--without-wasm", action="store_true",
                        help="run even when the wasm module is not built (pure-Python tests)")
    parser.add_argument("--timeout", type=float, default=3600.0,
                        help="seconds to wait for the browser run (default 3600)")
    parser.add_argument("--results", type=Path, default=None,
                        help="where the junit xml goes (default "
                             "tests/.artifacts/results-RUNTIME.xml, read by tests.matrix)")
    ours, pytest_args = parser.parse_known_args(argv)
    pytest_args, named = paths.resolve_args(pytest_args, Path.cwd())
    if not named:  # no path given: pytest collects the checkout's testpaths (pyproject.toml)
        named = [paths.REPO / "tests"]
    if shutil.which("node") is None and ours.runtime == "node":
        parser.error("node is not on PATH")

    started = time.monotonic()
    wasm = find_wasm(required=not ours.without_wasm)
    pyodide_dir = ensure_pyodide()
    # .cache may be a link out of the checkout: resolved paths are the ones to mount
    wheels = [w.resolve() for w in [*ensure_wheels(), *runtime_wheels()]]
    data_folders, data_env = host_data()
    fixtures = make_fixtures().resolve()
    junit = (ours.results or paths.ARTIFACTS / f"results-{ours.runtime}.xml").resolve()
    junit.parent.mkdir(parents=True, exist_ok=True)
    junit.unlink(missing_ok=True)
    node = ours.runtime == "node"  # Node writes the junit xml in place; Chromium posts it
    config = {
        "runtime": ours.runtime,
        "repo": str(paths.REPO),
        "pyodideDir": str(pyodide_dir),
        "glueJs": str(paths.REPO / "wasm" / "llamart_pyodide.js"),
        "wasm": wasm,
        "wheels": [str(w) for w in wheels],
        "trees": [str(t) for t in paths.visible_trees(
            [*named, fixtures, *{w.parent for w in wheels},
             *([junit.parent, *map(Path, data_folders)] if node else [])])],
        # Chromium: {folder: [files]} served and mounted as Blobs (Node mounts the folders)
        "blobs": {} if node else {d: [str(f) for f in fs] for d, fs in data_folders.items()},
        "env": {"LLAMART_FIXTURES": str(fixtures), "LLAMART_RUNTIME": f"pyodide-{ours.runtime}",
                **data_env},
        "args": pytest_args,
        "junit": str(junit),
    }
    print(f"pyodide_runner: setup {time.monotonic() - started:.1f} s; running pytest "
          f"{' '.join(pytest_args)} in Pyodide ({ours.runtime})", flush=True)
    started = time.monotonic()
    if ours.runtime == "node":
        code = run_node(config)
    else:
        code = run_chromium(config, timeout=ours.timeout)
    print(f"pyodide_runner: {ours.runtime} run took {time.monotonic() - started:.1f} s, exit "
          f"code {code}; junit xml: {junit if junit.exists() else 'not written'}", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
