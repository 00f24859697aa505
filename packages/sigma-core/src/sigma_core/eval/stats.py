"""Intervals Sigma reports: paired bootstrap over episodes, Wilson for success rates."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Interval:
    """An estimate with its ``level`` confidence interval ``[low, high]`` over ``n`` units."""

    estimate: float
    low: float
    high: float
    level: float
    n: int

    def as_dict(self) -> dict[str, float]:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.estimate:+.4g} [{self.low:+.4g}, {self.high:+.4g}]"


def paired_bootstrap(
    a: np.ndarray, b: np.ndarray, *, n_boot: int = 10_000, seed: int = 0, level: float = 0.95
) -> Interval:
    """``mean(a − b)`` over paired units with a percentile bootstrap interval.

    The units are episodes (``a[i]`` and ``b[i]`` are two groups' means over the
    same episode's windows): windows of one episode are correlated, so resampling
    windows would make the interval too narrow. Seeded: the same inputs give the
    same interval.
    """
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    if diff.ndim != 1 or len(diff) == 0:
        raise ValueError("paired_bootstrap needs two equal-length 1-D arrays of at least 1 unit")
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(n_boot, len(diff)))].mean(1)
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(means, [tail, 100 - tail])
    return Interval(float(diff.mean()), float(low), float(high), level, len(diff))


def wilson(successes: int, n: int, level: float = 0.95) -> Interval:
    """The Wilson score interval of a success rate ``successes / n``."""
    if n <= 0:
        raise ValueError("wilson needs n >= 1")
    z = {0.9: 1.6448536269514722, 0.95: 1.959963984540054, 0.99: 2.5758293035489004}[level]
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return Interval(p, max(0.0, centre - half), min(1.0, centre + half), level, n)
