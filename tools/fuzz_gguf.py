"""Fuzz llamart's GGUF loading with mutated fixture models and adapters.

    python -m tools.fuzz_gguf --cases 500 --seed 1 [--fixtures DIR] [--out fuzz.json]
                                 [--timeout 60] [--keep DIR] [--backend native|wasm]
                                 [--wasm-dir build-wasm/wasm] [--raw]

Each case is loaded by the native Engine in a child process (restarted after a crash); the
summary JSON counts outcomes (rejected / loaded / crash / hang / unexpected) and lists every
bad case with its mutations.  Exit status 1 when any case crashed, hung or raised an
unexpected exception type.  Needs the native library; fixtures are built when not given
(env LLAMART_FIXTURES or --fixtures DIR with manifest.json).

``--backend wasm`` validates each case in Python (as the Engine does) and loads the accepted
files with the WebAssembly module in one Node process (tools/fuzz_wasm.cjs; a trap or abort is
a crash, after which the module is instantiated again).  ``--raw`` also sends the refused files
to the module, to count the crashes that validation blocks (those do not fail the run).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # as a script too

from tools import fuzz  # noqa: E402


def _fixtures(folder: str | None, tmp: str) -> dict[str, str]:
    folder = folder or os.environ.get("LLAMART_FIXTURES")
    if folder:
        from llamart.testing.fixtures import load

        return load(folder)
    from llamart.testing.fixtures import build

    return build(os.path.join(tmp, "fixtures"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=300)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--fixtures", help="folder with manifest.json (default: build them)")
    ap.add_argument("--out", default=".cache/fuzz/summary.json", help="summary JSON path")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds per case")
    ap.add_argument("--keep", help="copy crashing/hanging case files here")
    ap.add_argument("--backend", choices=("native", "wasm"), default="native")
    ap.add_argument("--wasm-dir", help="folder with llamart_wasm.js/.wasm "
                    "(default: build-wasm/wasm)")
    ap.add_argument("--raw", action="store_true",
                    help="wasm: also load files the validator refuses")
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="llamart-fuzz-") as tmp:
        fx = _fixtures(a.fixtures, tmp)
        cases = fuzz.make_cases(fuzz.fixture_sources(fx), os.path.join(tmp, "cases"),
                                a.cases, a.seed)
        log = (lambda s: print(s, file=sys.stderr)) if a.verbose else None
        results = fuzz.run_cases(cases, fx["model_f32"], timeout=a.timeout, log=log,
                                 backend=a.backend, wasm_dir=a.wasm_dir, raw=a.raw)
        summary = fuzz.summarize(cases, results, a.seed)
        if a.keep:
            os.makedirs(a.keep, exist_ok=True)
            for bad in summary["bad"]:  # type: ignore[union-attr]
                shutil.copy(bad["path"], a.keep)
    os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(summary, f, indent=1)
    print(json.dumps({"backend": a.backend, "raw": a.raw}
                     | {k: summary[k] for k in ("seed", "cases", "counts",
                                                "validator_passed_llama_rejected",
                                                "crashes_blocked_by_validator")}))
    for bad in summary["bad"]:  # type: ignore[union-attr]
        print(f"  {bad['outcome']}: case {bad['id']} {bad['source']} {bad['mutations']} "
              f"{bad['detail'][:160]}")
    return 1 if summary["bad"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
