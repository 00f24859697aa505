"""Shared fixtures of the CLI tests (imported by name: a second conftest.py would clash)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sigma_core.testing import write_synthetic_shards


@pytest.fixture(scope="session", name="tiny_shards")
def tiny_shards_fixture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Shards at configs/default.yaml's dims: 4 episodes x 24 frames, all in train."""
    out = tmp_path_factory.mktemp("cli") / "shards"
    return write_synthetic_shards(out, val_fraction=0, test_fraction=0)
