"""Helpers for the Engine tests against llamart.testing.FakeBackend (tests/test_engine_*.py;
their fixtures are in tests/conftest.py)."""

from __future__ import annotations

from llamart import Engine


def logits_of(e: Engine, prompt: str = "abc") -> list[float]:
    """The fake's next-token logits after ``prompt``, as a list (comparable with ``==``)."""
    return list(e.logits(prompt))
