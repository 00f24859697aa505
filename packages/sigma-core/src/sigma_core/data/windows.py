"""Sliding windows over an episode and the paper's three target scales.

A window starting at frame ``t`` observes frame ``t`` (images and state) and has
three targets taken from the source actions, bit for bit:

* vector:     ``a_t``                          (A,)
* chunk:      ``a_t .. a_{t+H_c-1}``           (H_c, A)
* trajectory: ``a_t .. a_{t+T-1}``             (T, A)

Episode ends: windows never cross an episode boundary and are never padded; the
last window starts at ``N - T``. An episode shorter than ``T`` has no windows.

Static filter (paper fields ``avg_action_l2`` / ``max_action_l2``): the mean and
max L2 norm over the window of either the per-step action change
``‖a_{k+1} − a_k‖`` (``l2_of="delta"``, the default: the actions of SO-101
datasets are absolute joint positions, whose norm measures the pose, not motion)
or of the action itself (``l2_of="action"``, for delta-action datasets). Windows
with ``avg_action_l2 < min_action_norm`` are dropped as static.

Windows with a non-finite value in their actions or in the observed state are
dropped (and counted) before the static filter, so they are never trained on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from sigma_core.data.episodes import Episode


@dataclass(frozen=True)
class WindowRule:
    """How windows are cut: horizon T, chunk H_c, stride and the static filter."""

    horizon: int = 16
    chunk: int = 8
    stride: int = 1
    min_action_norm: float = 0.0
    l2_of: Literal["delta", "action"] = "delta"

    def __post_init__(self) -> None:
        if not 1 <= self.chunk <= self.horizon:
            raise ValueError(f"chunk {self.chunk} must be in [1, horizon={self.horizon}]")
        if self.stride < 1:
            raise ValueError(f"stride must be >= 1, got {self.stride}")


@dataclass
class Windows:
    """Windows kept from one episode plus what was dropped.

    Attributes:
        start: (W,) frame index of each kept window's observation.
        avg_action_l2 / max_action_l2: (W,) the static-filter statistics.
        candidates: windows before filtering.
        dropped_nonfinite / dropped_static: how many were dropped and why.
    """

    start: np.ndarray
    avg_action_l2: np.ndarray
    max_action_l2: np.ndarray
    candidates: int
    dropped_nonfinite: int
    dropped_static: int


def action_l2(actions: np.ndarray, l2_of: str) -> tuple[np.ndarray, np.ndarray]:
    """(avg, max) L2 statistics of windows ``actions`` of shape (W, T, A)."""
    x = np.diff(actions, axis=1) if l2_of == "delta" else actions
    norms = np.linalg.norm(x.astype(np.float64), axis=-1)
    return norms.mean(axis=1).astype(np.float32), norms.max(axis=1).astype(np.float32)


def cut_windows(episode: Episode, rule: WindowRule) -> Windows:
    """Cut ``episode`` into windows by ``rule`` (see the module docstring)."""
    n, t = len(episode.action), rule.horizon
    starts = np.arange(0, max(n - t + 1, 0), rule.stride, dtype=np.int64)
    if len(starts) == 0:
        empty = np.zeros(0, np.float32)
        return Windows(starts, empty, empty, 0, 0, 0)
    traj = episode.action[starts[:, None] + np.arange(t)]  # (W, T, A)
    finite = np.isfinite(traj).all(axis=(1, 2)) & np.isfinite(episode.state[starts]).all(axis=1)
    avg = np.full(len(starts), np.nan, np.float32)
    mx = np.full(len(starts), np.nan, np.float32)
    if finite.any():
        avg[finite], mx[finite] = action_l2(traj[finite], rule.l2_of)
    moving = finite & (avg >= rule.min_action_norm)
    return Windows(
        start=starts[moving],
        avg_action_l2=avg[moving],
        max_action_l2=mx[moving],
        candidates=len(starts),
        dropped_nonfinite=int((~finite).sum()),
        dropped_static=int((finite & ~moving).sum()),
    )
