"""Normalization statistics and the episode-level split."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)


def feature_stats(x: np.ndarray) -> dict[str, list[float]]:
    """mean, std, min, max and quantiles q01..q99 per column over the finite rows of ``x``."""
    x = x[np.isfinite(x).all(axis=1)].astype(np.float64)
    if len(x) == 0:
        raise ValueError("no finite rows to compute statistics from")
    out = {
        "mean": x.mean(0),
        "std": x.std(0),
        "min": x.min(0),
        "max": x.max(0),
        "count": np.array([len(x)]),
    }
    for q, v in zip(QUANTILES, np.quantile(x, QUANTILES, axis=0), strict=True):
        out[f"q{round(q * 100):02d}"] = v
    return {k: [float(f) for f in v] for k, v in out.items()}


def split_episodes(
    episodes: list[int], val_fraction: float, test_fraction: float, seed: int
) -> dict[str, list[int]]:
    """Disjoint train/val/test episode lists, shuffled by ``seed``.

    A non-zero fraction gets at least one episode when there are at least three
    episodes, so a small dataset still has a held-out set; train keeps at least one.
    """
    eps = sorted(episodes)
    perm = [eps[i] for i in np.random.default_rng(seed).permutation(len(eps))]

    def take(frac: float) -> int:
        k = round(frac * len(eps))
        return max(k, 1) if frac > 0 and len(eps) >= 3 else k

    n_val, n_test = take(val_fraction), take(test_fraction)
    if n_val + n_test >= len(eps):
        n_val, n_test = 0, 0
    return {
        "train": sorted(perm[n_val + n_test :]),
        "val": sorted(perm[:n_val]),
        "test": sorted(perm[n_val : n_val + n_test]),
    }


class Normalizer:
    """``x_n = (x − mean) / std`` per feature, from meta.json statistics (std floored)."""

    def __init__(self, stats: dict[str, Any], eps: float = 1e-6) -> None:
        self.mean = torch.tensor(stats["mean"], dtype=torch.float32)
        self.std = torch.tensor(stats["std"], dtype=torch.float32).clamp_min(eps)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean.to(x.device)) / self.std.to(x.device)

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.std.to(x.device) + self.mean.to(x.device)
