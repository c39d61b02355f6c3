"""Medians with min-max."""

from __future__ import annotations

import statistics
from collections.abc import Sequence


def med(values: Sequence[float]) -> float | None:
    vals = [v for v in values if v is not None]
    return statistics.median(vals) if vals else None


def spread(values: Sequence[float], fmt: str = "{:.1f}", scale: float = 1.0) -> str:
    """"median (min-max)", or "n/a"."""
    vals = [v * scale for v in values if v is not None]
    if not vals:
        return "n/a"
    m = statistics.median(vals)
    if len(vals) == 1:
        return fmt.format(m)
    return f"{fmt.format(m)} ({fmt.format(min(vals))}–{fmt.format(max(vals))})"


def ratio(a: Sequence[float], b: Sequence[float]) -> float | None:
    ma, mb = med(a), med(b)
    if ma is None or mb is None or mb == 0:
        return None
    return ma / mb
