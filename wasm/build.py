"""Build the llamart WebAssembly module: ``python -m wasm.build [--jobs N] [--build-dir DIR]``.

Runs ``emcmake cmake -S . -B build-wasm`` and builds the ``llamart_wasm`` target, giving
``build-wasm/wasm/llamart_wasm.js`` and ``llamart_wasm.wasm``. Needs ``emcc`` on PATH (Debian's
``emscripten`` package, or an activated emsdk: see wasm/README.md).
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


def build(build_dir: Path, jobs: int, fast_link: bool = False) -> Path:
    """Configure (once) and build; returns the folder holding llamart_wasm.js/.wasm."""
    if shutil.which("emcmake") is None:
        raise SystemExit("wasm.build: emcmake not found: install Debian's `emscripten` package "
                         "or activate an emsdk (see wasm/README.md)")
    env = dict(os.environ)
    if Path("/usr/share/nodejs/acorn").is_dir():  # Debian emcc 3.1.6 finds acorn only here
        env["NODE_PATH"] = os.pathsep.join(p for p in ("/usr/share/nodejs",
                                                       env.get("NODE_PATH")) if p)
    started = time.monotonic()
    link_opt = "-O2" if fast_link else "-O3"
    if not (build_dir / "CMakeCache.txt").exists():
        subprocess.run(["emcmake", "cmake", "-S", str(REPO), "-B", str(build_dir),
                        "-DCMAKE_BUILD_TYPE=Release", f"-DLLAMART_WASM_LINK_OPT={link_opt}"],
                       check=True, env=env)
    else:
        subprocess.run(["cmake", f"-DLLAMART_WASM_LINK_OPT={link_opt}", str(build_dir)],
                       check=True, env=env, stdout=subprocess.DEVNULL)
    subprocess.run(["cmake", "--build", str(build_dir), "--target", "llamart_wasm",
                    "-j", str(jobs)], check=True, env=env)
    out = build_dir / "wasm"
    print(f"wasm.build: {out}/llamart_wasm.js + .wasm in {time.monotonic() - started:.0f} s")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m wasm.build", description=__doc__)
    parser.add_argument("--build-dir", type=Path, default=REPO / "build-wasm")
    parser.add_argument("--jobs", "-j", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--fast-link", action="store_true",
                        help="link at -O2 (~1 min instead of ~4; slightly slower code)")
    args = parser.parse_args(argv)
    build(args.build_dir.resolve(), args.jobs, args.fast_link)
    return 0


if __name__ == "__main__":
    sys.exit(main())
