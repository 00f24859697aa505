"""Shared fixtures of the CLI tests (imported by name: a second conftest.py would clash)."""

from __future__ import annotations

from pathlib import Path

import pytest


def write_tiny_shards(out: Path, episodes: int = 4, frames: int = 24) -> Path:
    """Preprocessed shards of random episodes at the default spec's dims (2 cameras, 96 px)."""
    import numpy as np

    from sigma_core.data import Episode, InMemorySource, PreprocessOptions, SourceInfo, preprocess

    rng = np.random.default_rng(0)
    cams = ["overhead", "wrist"]
    eps = [
        Episode(
            i,
            "pick",
            np.cumsum(rng.normal(size=(frames, 6)), 0).astype(np.float32),
            rng.normal(size=(frames, 6)).astype(np.float32),
            {c: rng.integers(0, 256, (frames, 3, 96, 96), dtype=np.uint8) for c in cams},
        )
        for i in range(episodes)
    ]
    info = SourceInfo("test", "synthetic", 30, 6, 6, {c: c for c in cams}, {})
    opts = PreprocessOptions(cameras=cams, min_action_norm=0, val_fraction=0, test_fraction=0)
    preprocess(InMemorySource(eps, info), out, opts)
    return out


@pytest.fixture(scope="session", name="tiny_shards")
def tiny_shards_fixture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_shards(tmp_path_factory.mktemp("cli") / "shards")
