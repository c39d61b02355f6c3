"""A fixed-seed slice of the GGUF fuzzer: mutated models and adapters never crash the process.

The cases are loaded one after another by the native Engine in one child process (a crash there
cannot take pytest down); each must end in a clean exception or a working load.  The full
fuzzer is python -m tools.fuzz_gguf.
"""

from __future__ import annotations

import sys

import pytest

from tools import fuzz

pytestmark = pytest.mark.skipif(sys.platform == "emscripten",
                                reason="needs subprocesses and the native backend")


def test_fuzzed_files_load_or_fail_cleanly(fx: dict[str, str], tmp_path) -> None:
    cases = fuzz.make_cases(fuzz.fixture_sources(fx), str(tmp_path / "cases"), 240, seed=20240)
    results = fuzz.run_cases(cases, fx["model_f32"], timeout=120.0)
    summary = fuzz.summarize(cases, results, 20240)
    assert summary["bad"] == [], summary["bad"]
    counts = summary["counts"]
    assert counts.get("rejected", 0) > 100  # most mutations break the file...
    assert counts.get("loaded", 0) > 5  # ...some stay loadable and are evaluated
    assert sum(counts.values()) == 240
    assert {c.kind for c in cases} == {"model", "adapter"}


def test_the_scheduler_survives_random_calls_adapters_and_cancels(fx: dict[str, str]) -> None:
    """tools/fuzz_scheduler.py, a fixed-seed slice (interleaved, then threads), in a child
    process: every call ends cleanly, nothing leaks, greedy text unchanged."""
    import json
    import os
    import subprocess
    from pathlib import Path

    folder = Path(fx["model_f32"]).parent
    if not (folder / "manifest.json").exists():
        pytest.skip("the fixtures have no manifest here")
    for extra in ([], ["--threads"]):
        out = subprocess.run([sys.executable, "-m", "tools.fuzz_scheduler", "--rounds", "150",
                              "--seed", "11", "--fixtures", str(folder), *extra],
                             capture_output=True, text=True, timeout=600,
                             env={**os.environ, "GGML_NO_BACKTRACE": "1"},
                             cwd=Path(__file__).resolve().parents[1])
        assert out.returncode == 0, (out.stdout[-2000:], out.stderr[-3000:])
        summary = json.loads(out.stdout.strip().splitlines()[-1])
        seen = summary["outcomes"]
        assert seen["done"] > 100 and seen.get("abandoned", 0) > 5
        assert seen.get("AdapterError", 0) > 10 and seen.get("ContextOverflowError", 0) > 5
