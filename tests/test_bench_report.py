"""bench/report.py's WebAssembly threads targets, from a results dict (no measurement)."""

from __future__ import annotations

import sys

import pytest

pytestmark = pytest.mark.skipif(sys.platform == "emscripten", reason="bench: native tooling")


def test_thread_targets_judge_the_worse_of_the_two_one_thread_rows() -> None:
    from bench.report import wasm_thread_targets
    from bench.wasm import system_name

    systems = {
        system_name("Node", "single", 1): {"pp_tps": [100.0], "tg_tps": [50.0]},
        system_name("Node", "threads", 1): {"pp_tps": [90.0], "tg_tps": [45.0]},
        system_name("Node", "threads", 2): {"pp_tps": [180.0], "tg_tps": [72.0]},
    }
    rows = wasm_thread_targets({"wasm": {"m": {"model": "m", "systems": systems}}})
    assert [(t.split(",")[0], m, ok) for t, m, ok in rows] == [
        # tg: 72/45 = 1.6 vs the threads module, 72/50 = 1.44 vs the single one: both >= 1.4
        ("WASM 2 threads >= 1.4x 1 thread", "1.60x vs the threads module at 1 thread, 1.44x "
         "vs the single-thread module", True),
        # pp: 180/90 = 2.0, but 180/100 = 1.8: both >= 1.7
        ("WASM 2 threads >= 1.7x 1 thread", "2.00x vs the threads module at 1 thread, 1.80x "
         "vs the single-thread module", True)]
    systems[system_name("Node", "single", 1)]["tg_tps"] = [60.0]  # 72/60 = 1.2 < 1.4
    rows = wasm_thread_targets({"wasm": {"m": {"model": "m", "systems": systems}}})
    assert [ok for _, _, ok in rows] == [False, True]
    assert system_name("Chromium", "threads", 2) == (
        "Pyodide + Chromium, threads module, 2 threads")
