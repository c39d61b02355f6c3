"""Build the llamart WebAssembly modules: ``python -m wasm.build [--jobs N] [--build-dir DIR]
[--only single|threads]``.

Runs ``emcmake cmake -S . -B build-wasm`` and builds the ``llamart_wasm`` target, giving
``build-wasm/wasm/llamart_wasm.js`` and ``.wasm`` (single-threaded), then the same in
``build-wasm-mt`` with ``-DLLAMART_WASM_THREADS=ON``, giving ``llamart_wasm_mt.js``, ``.wasm``
and ``.worker.js`` in the same ``build-wasm/wasm`` folder (pthreads; wasm/llamart_pyodide.js
picks one at run time). Needs ``emcc`` on PATH (Debian's ``emscripten`` package, or an
activated emsdk: see wasm/README.md).

``--relaxed`` also builds the relaxed-SIMD variants of both (``llamart_wasm_relaxed.js`` and
``llamart_wasm_mt_relaxed.js``, in ``<DIR>-relaxed`` and ``<DIR>-mt-relaxed``): ggml's q4_1 vec
dot compiled by a clang >= 16 (Debian: ``apt-get install clang-19``), see wasm/relaxed/.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


BUILDS = ("single", "threads", "relaxed", "threads-relaxed")


def build(build_dir: Path, jobs: int, fast_link: bool = False, threads: bool = False,
          out_dir: Path | None = None, relaxed: bool = False) -> Path:
    """Configure (once) and build one module; returns the folder holding its .js/.wasm."""
    if shutil.which("emcmake") is None:
        raise SystemExit("wasm.build: emcmake not found: install Debian's `emscripten` package "
                         "or activate an emsdk (see wasm/README.md)")
    env = dict(os.environ)
    if Path("/usr/share/nodejs/acorn").is_dir():  # Debian emcc 3.1.6 finds acorn only here
        env["NODE_PATH"] = os.pathsep.join(p for p in ("/usr/share/nodejs",
                                                       env.get("NODE_PATH")) if p)
    started = time.monotonic()
    out = out_dir or build_dir / "wasm"
    options = [f"-DLLAMART_WASM_LINK_OPT={'-O2' if fast_link else '-O3'}",
               f"-DLLAMART_WASM_THREADS={'ON' if threads else 'OFF'}",
               f"-DLLAMART_WASM_RELAXED_SIMD={'ON' if relaxed else 'OFF'}",
               f"-DLLAMART_WASM_OUT_DIR={out}"]
    if not (build_dir / "CMakeCache.txt").exists():
        subprocess.run(["emcmake", "cmake", "-S", str(REPO), "-B", str(build_dir),
                        "-DCMAKE_BUILD_TYPE=Release", *options], check=True, env=env)
    else:
        subprocess.run(["cmake", *options, str(build_dir)],
                       check=True, env=env, stdout=subprocess.DEVNULL)
    subprocess.run(["cmake", "--build", str(build_dir), "--target", "llamart_wasm",
                    "-j", str(jobs)], check=True, env=env)
    name = ("llamart_wasm_mt" if threads else "llamart_wasm") + ("_relaxed" if relaxed else "")
    print(f"wasm.build: {out}/{name}.js + .wasm in {time.monotonic() - started:.0f} s",
          flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m wasm.build", description=__doc__)
    parser.add_argument("--build-dir", type=Path, default=REPO / "build-wasm",
                        help="the single-threaded build (its wasm/ folder receives both modules;"
                        " the threaded build is configured in <DIR>-mt)")
    parser.add_argument("--only", choices=BUILDS, help="build one of the modules")
    parser.add_argument("--relaxed", action="store_true",
                        help="also the relaxed-SIMD variants (needs clang >= 16)")
    parser.add_argument("--jobs", "-j", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--fast-link", action="store_true",
                        help="link at -O2 (~1 min instead of ~4; slightly slower code)")
    args = parser.parse_args(argv)
    single_dir = args.build_dir.resolve()
    out = single_dir / "wasm"
    for which in BUILDS:
        relaxed = which.endswith("relaxed")
        if args.only == which or (args.only is None and (args.relaxed or not relaxed)):
            threads = which.startswith("threads")
            name = single_dir.name + ("-mt" if threads else "") + ("-relaxed" if relaxed else "")
            build(single_dir.with_name(name), args.jobs, args.fast_link, threads=threads,
                  out_dir=out, relaxed=relaxed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
