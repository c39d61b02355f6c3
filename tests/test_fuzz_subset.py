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
