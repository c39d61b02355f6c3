"""The shape of the benchmark result file (what several report sections read alike)."""

from __future__ import annotations

from typing import Any

__all__ = ["wasm_runs"]


def wasm_runs(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """model key -> WebAssembly result (older result files held one model unkeyed)."""
    w = data.get("wasm") or {}
    if "systems" in w or "unavailable" in w:
        return {w.get("model", "small-q8_0"): w}
    return w
