"""Fakes for tests and benchmarks: random batches and synthetic shards at any dims."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sigma_core.config import Dims

if TYPE_CHECKING:
    from sigma_core.types import SigmaBatch


def example_batch(
    dims: Dims, batch_size: int = 4, seed: int = 0, targets: bool = True
) -> SigmaBatch:
    """A random :class:`~sigma_core.types.SigmaBatch` at ``dims`` (with targets), seeded;
    with a scene state when ``dims`` reads or predicts one."""
    import torch

    from sigma_core.types import ActionSet, SigmaBatch

    g = torch.Generator().manual_seed(seed)
    p, c, f = dims.image_size, len(dims.cameras), dims.frame_history
    texts = ["pick up the red cube", "place it on the blue circle", "go", "stop"]
    scene = dims.scene_state_dim
    return SigmaBatch(
        torch.rand(batch_size, c, f, 3, p, p, generator=g),
        torch.randn(batch_size, dims.state_dim, generator=g),
        [texts[i % len(texts)] for i in range(batch_size)],
        targets=ActionSet(
            torch.randn(batch_size, dims.action_dim, generator=g),
            torch.randn(batch_size, dims.chunk_horizon, dims.action_dim, generator=g),
            torch.randn(batch_size, dims.horizon, dims.action_dim, generator=g),
        )
        if targets
        else None,
        environment_state=torch.randn(batch_size, scene, generator=g) if scene else None,
    )


def write_synthetic_shards(
    out: str | os.PathLike[str],
    dims: Dims | None = None,
    episodes: int = 4,
    frames: int | Sequence[int] = 24,
    tasks: tuple[str, ...] = ("pick up the red cube", "pick up the green cube"),
    **options: Any,
) -> Path:
    """Preprocess random-walk episodes at ``dims`` into shards at ``out``; return ``out``.

    Actions and states are random walks (so no window is static), images are
    uniform noise; episode ``i`` has task ``tasks[i % len(tasks)]`` and ``frames``
    frames (or ``frames[i % len(frames)]``: episodes of different lengths);
    ``options`` override :class:`PreprocessOptions` fields (e.g. ``val_fraction``).
    For tests and benchmarks that need real shards offline.
    """
    import numpy as np

    from sigma_core.data import Episode, InMemorySource, PreprocessOptions, SourceInfo, preprocess

    d = dims or Dims()
    rng = np.random.default_rng(0)
    lengths = [frames] if isinstance(frames, int) else list(frames)

    def episode(i: int) -> Episode:
        n = lengths[i % len(lengths)]
        return Episode(
            i,
            tasks[i % len(tasks)],
            np.cumsum(rng.normal(size=(n, d.action_dim)), 0).astype(np.float32),
            np.cumsum(rng.normal(size=(n, d.state_dim)), 0).astype(np.float32),
            {
                c: rng.integers(0, 256, (n, 3, d.image_size, d.image_size), dtype=np.uint8)
                for c in d.cameras
            },
        )

    eps = [episode(i) for i in range(episodes)]
    info = SourceInfo(
        "synthetic", "random walks", 30, d.action_dim, d.state_dim, {c: c for c in d.cameras}, {}
    )
    opts = PreprocessOptions(
        cameras=list(d.cameras),
        image_size=d.image_size,
        horizon=d.horizon,
        chunk=d.chunk_horizon,
        min_action_norm=0,
        **options,
    )
    preprocess(InMemorySource(eps, info), out, opts)
    return Path(out)


def planned_actions(policy: Any, batch: SigmaBatch, seed: int = 1) -> Any:
    """``policy.act(batch)``'s plan under ``seed`` without gradients: comparable across loads."""
    import torch

    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return policy.act(batch)[0]
