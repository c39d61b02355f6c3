"""Run the pytest suite inside Pyodide, under Node or in headless Chromium.

    python -m tools.pyodide_runner --runtime node|chromium [--threads auto|on|off]
                                   [--no-isolation] [pytest args ...]

Any test file or folder runs, inside the checkout or not: the folders the pytest arguments
name (a file brings the folder it is in) are mounted (Node) or shipped (Chromium) at their host
paths, with llamart/ and tools/. Steps: make the test fixtures natively (``python -m
llamart.testing.fixtures``), fetch pytest's pure-Python wheels once into ``.cache/`` (``pip
download``), then start Pyodide (npm package,
pinned in package.json: run ``npm ci``), unpack pytest's wheels and micropip, build llamart's
Pyodide wheel from the checkout and the modules (``build-wasm/wasm`` or ``$LLAMART_WASM_DIR``;
``python -m wasm.wheel``, into dist/) and ``micropip.install`` it with jinja2 and markupsafe
(deps=False), as users do; the wheel's loader makes the module (the pthreads build where it can
run: Node, or the page served cross-origin isolated, which ``--no-isolation`` turns off;
``--threads`` forces it through ``LLAMART_WASM_THREADS``) and registers it as
``import llamart_wasm``, and the suite runs against the installed package:
``pytest.main(args)`` with the checkout at its host path as the working directory. The real
models and vocabulary files keep their host paths: NODEFS mounts in Node; in Chromium the
server serves each file and the worker mounts them as Blobs (WORKERFS: read on demand, never
copied into the Pyodide heap; llama.cpp reads a model into the module's heap when it loads). Output
streams live; junit xml lands in ``tests/.artifacts/results-<runtime>[-unisolated].xml``
(``--results``);
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
    micropip_wheel,
    pyodide_wheel,
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
    parser.add_argument("--threads", choices=("auto", "on", "off"), default="auto",
                        help="which module: auto = the pthreads build where it can run (Node, an"
                        " isolated page) and the single-threaded one elsewhere; on / off force it")
    parser.add_argument("--no-isolation", action="store_true",
                        help="chromium: serve without COOP/COEP (no SharedArrayBuffer), as a"
                        " plain web host would")
    parser.add_argument("--timeout", type=float, default=3600.0,
                        help="seconds to wait for the browser run (default 3600)")
    parser.add_argument("--results", type=Path, default=None,
                        help="where the junit xml goes (default tests/.artifacts/"
                             "results-RUNTIME[-unisolated].xml, read by tests.matrix)")
    ours, pytest_args = parser.parse_known_args(argv)
    pytest_args, named = paths.resolve_args(pytest_args, Path.cwd())
    if not named:  # no path given: pytest collects the checkout's testpaths (pyproject.toml)
        named = [paths.REPO / "tests"]
    if shutil.which("node") is None and ours.runtime == "node":
        parser.error("node is not on PATH")

    started = time.monotonic()
    wasm = find_wasm(required=not ours.without_wasm)
    if ours.no_isolation and ours.runtime != "chromium":
        parser.error("--no-isolation is for --runtime chromium")
    if ours.threads == "on" and not (wasm and wasm["threaded"]):
        parser.error("--threads on: no threaded build (python -m wasm.build --only threads)")
    isolated = ours.runtime == "node" or not ours.no_isolation
    # the build the glue must pick (tests/test_wasm_threads.py checks it did)
    expect = ("threads" if wasm and wasm["threaded"] and ours.threads != "off"
              and (ours.threads == "on" or isolated) else "single")
    pyodide_dir = ensure_pyodide()
    # .cache may be a link out of the checkout: resolved paths are the ones to mount.
    # Unpacked: pytest's wheels and micropip; micropip-installed (deps=False, as users do):
    # jinja2, markupsafe and llamart's Pyodide wheel (built from this checkout), when there is
    # a module to carry
    unpacked = [w.resolve() for w in [*ensure_wheels(), micropip_wheel()]]
    install = [w.resolve() for w in [*runtime_wheels(), *([pyodide_wheel()] if wasm else [])]]
    wheels = [*unpacked, *install]
    data_folders, data_env = host_data()
    fixtures = make_fixtures().resolve()
    run = ours.runtime + ("-unisolated" if ours.no_isolation else "")
    junit = (ours.results or paths.ARTIFACTS / f"results-{run}.xml").resolve()
    junit.parent.mkdir(parents=True, exist_ok=True)
    junit.unlink(missing_ok=True)
    node = ours.runtime == "node"  # Node writes the junit xml in place; Chromium posts it
    config = {
        "runtime": ours.runtime,
        "repo": str(paths.REPO),
        "pyodideDir": str(pyodide_dir),
        "wasm": bool(wasm),
        "isolated": isolated,
        "wheels": [str(w) for w in unpacked],
        "install": [str(w) for w in install],
        "trees": [str(t) for t in paths.visible_trees(
            [*named, fixtures, *{w.parent for w in wheels},
             *([junit.parent, *map(Path, data_folders)] if node else [])])],
        # Chromium: {folder: [files]} served and mounted as Blobs (Node mounts the folders)
        "blobs": {} if node else {d: [str(f) for f in fs] for d, fs in data_folders.items()},
        "env": {"LLAMART_FIXTURES": str(fixtures), "LLAMART_RUNTIME": f"pyodide-{ours.runtime}",
                "LLAMART_EXPECT_WASM_BUILD": expect if wasm else "",
                "LLAMART_HOST_CORES": str(os.cpu_count() or 1), **data_env,
                **({} if ours.threads == "auto" else
                   {"LLAMART_WASM_THREADS": "1" if ours.threads == "on" else "0"})},
        "args": pytest_args,
        "junit": str(junit),
    }
    print(f"pyodide_runner: setup {time.monotonic() - started:.1f} s; running pytest "
          f"{' '.join(pytest_args)} in Pyodide ({run}, {expect} module expected)",
          flush=True)
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
