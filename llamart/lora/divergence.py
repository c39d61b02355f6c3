"""Log-softmax, KL divergence and argmax over next-token logits, in float64.

:class:`PyMath` is pure Python (``math``, log-sum-exp), so it runs where numpy is absent (e.g.
Pyodide without numpy); :class:`NumpyMath` computes the same formulas with numpy, ~20x faster on
a 50k-token vocabulary. :func:`get_math` picks one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Protocol

NEG_INF = float("-inf")


class Math(Protocol):
    name: str

    def log_softmax(self, logits: Sequence[float]) -> Any: ...
    def kl(self, logp: Any, logq: Any) -> float: ...
    def logprob(self, logp: Any, token: int) -> float: ...
    def argmax(self, logits: Sequence[float]) -> int: ...


def _check_max(m: float) -> None:
    if not math.isfinite(m):
        raise ValueError(f"logits are not finite (largest is {m})")


class PyMath:
    """Pure-Python float64 math."""

    name = "python"

    @staticmethod
    def log_softmax(logits: Sequence[float]) -> list[float]:
        """log p_i = x_i - (m + log sum exp(x_j - m)), m = max x."""
        m = max(logits)
        _check_max(m)
        lse = m + math.log(math.fsum([math.exp(x - m) for x in logits]))
        return [x - lse for x in logits]

    @staticmethod
    def kl(logp: Sequence[float], logq: Sequence[float]) -> float:
        """KL(p || q) = sum_i p_i (log p_i - log q_i) in nats (terms with p_i = 0 are 0)."""
        if len(logp) != len(logq):
            raise ValueError(f"distributions differ in size ({len(logp)} vs {len(logq)})")
        total = math.fsum([math.exp(a) * (a - b) for a, b in zip(logp, logq, strict=True)
                            if a != NEG_INF])
        return max(total, 0.0)  # a tiny negative sum is rounding: KL >= 0

    @staticmethod
    def logprob(logp: Sequence[float], token: int) -> float:
        return float(logp[token])

    @staticmethod
    def argmax(logits: Sequence[float]) -> int:
        """The first maximum (the token llama.cpp's greedy sampler picks)."""
        return list(logits).index(max(logits))


class NumpyMath:
    """The same formulas on numpy float64 arrays."""

    name = "numpy"

    def __init__(self) -> None:
        import numpy

        self.np = numpy

    def log_softmax(self, logits: Sequence[float]) -> Any:
        x = self.np.asarray(logits, dtype=self.np.float64)
        m = float(x.max())
        _check_max(m)
        return x - (m + math.log(float(self.np.exp(x - m).sum())))

    def kl(self, logp: Any, logq: Any) -> float:
        if logp.shape != logq.shape:
            raise ValueError(f"distributions differ in size ({logp.size} vs {logq.size})")
        keep = logp != NEG_INF
        a = logp[keep]
        return max(float((self.np.exp(a) * (a - logq[keep])).sum()), 0.0)

    def logprob(self, logp: Any, token: int) -> float:
        return float(logp[token])

    def argmax(self, logits: Sequence[float]) -> int:
        return int(self.np.argmax(self.np.asarray(logits)))  # numpy also takes the first max


def get_math(use_numpy: bool | None = None) -> Math:
    """NumpyMath when ``use_numpy`` (None: when numpy imports), else PyMath."""
    if use_numpy is False:
        return PyMath()
    try:
        return NumpyMath()
    except ImportError:
        if use_numpy:
            raise
        return PyMath()
