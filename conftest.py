"""Fixtures of every test directory: recordings more than one test module reads (each
costs seconds of MuJoCo rendering)."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(scope="session")
def three_demos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """3 scripted demonstrations at 32 px, seed 0, recorded in one go: ``path`` (a LeRobot
    dataset; read it, never write to it) and ``summary`` (what ``write`` returned)."""
    from sigma_sim.config import So101PickPlaceConfig
    from sigma_sim.source import So101PickPlace

    out = tmp_path_factory.mktemp("sim") / "oneshot"
    summary = So101PickPlace(So101PickPlaceConfig(image_size=32)).write(
        out_dir=str(out), episodes=3, seed=0, progress=False
    )
    return {"path": out, "summary": summary}
