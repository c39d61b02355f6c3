"""A short soak (tools/soak.py): memory stays flat over model loads, LoRA changes and
abandoned generations.

The full run is ``python -m tools.soak --cycles 1000 --lora-ops 10000`` (target: < 2% growth
after warm-up). Here the phases are ten times shorter and the bound is generous (allocator
noise must not fail the suite; a leak of a model, context or adapter per cycle still does).
Memory comes from /proc/self/status natively and from the WebAssembly module's linear memory
in Pyodide; a platform with neither skips, saying so.
"""

from __future__ import annotations

from typing import Any

import pytest

from llamart import Engine
from tools import soak  # also run as python -m tools.soak

BOUND_PCT = 10.0  # generous: the full soak's target is 2%
SOURCE = soak.memory_source()
needs_memory = pytest.mark.skipif(SOURCE is None, reason=soak.no_source_reason())


def _check(res: soak.PhaseResult, record_property: Any) -> None:
    assert SOURCE is not None
    # stable text (the platform matrix is compared byte for byte); the figures go to the log
    print(f"{res.name}: {res.growth_pct:+.2f}% over {res.iterations - res.warmup} iterations "
          f"after warm-up ({SOURCE[0]})")
    record_property("behaviour", f"memory growth under {BOUND_PCT:g}% after warm-up "
                                 f"({SOURCE[0].split(' (')[0]})")
    assert res.after_warmup_kb > 0 and len(res.samples) >= 2
    assert res.growth_pct < BOUND_PCT and res.trend_pct < BOUND_PCT, res.samples


@needs_memory
def test_load_unload_cycles(engine: Engine, fx: dict[str, str], record_property: Any) -> None:
    assert SOURCE is not None
    res = soak.load_cycles(engine, fx, 100, SOURCE[1])
    _check(res, record_property)
    engine.load_model(fx["model_f32"], n_ctx=soak.N_CTX)  # still usable afterwards
    assert len(engine.logits(soak.PROMPT)) == engine.model_info.n_vocab


@needs_memory
def test_lora_ops(engine: Engine, fx: dict[str, str], record_property: Any) -> None:
    assert SOURCE is not None
    if not engine.capabilities.lora:
        with pytest.raises(ValueError, match="does not apply LoRA"):
            soak.lora_ops(engine, fx, 1000, SOURCE[1])
        pytest.skip(f"LoRA calls are no-ops on the {engine.capabilities.backend} backend")
    res = soak.lora_ops(engine, fx, 1000, SOURCE[1])
    _check(res, record_property)
    assert engine.loras == {}


@needs_memory
def test_abandoned_generations(engine: Engine, fx: dict[str, str],
                               record_property: Any) -> None:
    assert SOURCE is not None
    res = soak.abandoned_generations(engine, fx, 100, SOURCE[1])
    _check(res, record_property)


@needs_memory
def test_scheduled_rounds(engine: Engine, fx: dict[str, str], record_property: Any) -> None:
    """The parallel engine under random arrivals, adapter sets, cancels and abandons."""
    assert SOURCE is not None
    res = soak.scheduled(engine, fx, 60, SOURCE[1])
    _check(res, record_property)


def test_phase_arithmetic() -> None:
    """Growth is measured from the end of the warm-up, whatever the memory source."""
    done = [0]

    def step(i: int) -> None:
        done[0] = i + 1

    res = soak.run_phase("fake", 10, step, lambda: 100 + 2 * done[0], 0.2, n_samples=4)
    assert res.warmup == 2 and res.start_kb == 100 and res.after_warmup_kb == 104
    assert res.samples == [(2, 104), (4, 108), (6, 112), (8, 116), (10, 120)]
    assert (res.end_kb, res.max_kb, res.growth_kb) == (120, 120, 16)
    assert res.growth_pct == res.trend_pct == round(100 * 16 / 104, 3)
    with pytest.raises(ValueError):
        soak.run_phase("fake", 1, lambda i: None, lambda: 1)
    # with a period, every sample falls at the end of a cycle of steps
    res = soak.run_phase("fake", 100, lambda i: None, lambda: 50, 0.1, n_samples=5, period=7)
    assert res.warmup % 7 == 0 and all(done % 7 == 0 for done, _ in res.samples)
    assert res.samples[-1][0] == 98 and res.growth_pct == res.trend_pct == 0.0
