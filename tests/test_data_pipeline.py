"""End to end through the CLI: sigma data sim -> sigma preprocess -> loader batches."""

from __future__ import annotations

import json

import torch
from typer.testing import CliRunner

from sigma_cli.main import app
from sigma_core.data import ShardDataset, make_loader


def test_sim_then_preprocess_then_load(tmp_path):
    runner = CliRunner()
    sim = runner.invoke(
        app,
        [
            "data",
            "sim",
            "--episodes",
            "3",
            "--image-size",
            "32",
            "--out",
            str(tmp_path / "sim"),
            "--json",
        ],
    )
    assert sim.exit_code == 0, sim.output
    summary = json.loads(sim.stdout[sim.stdout.index("{") :])
    assert summary["episodes"] == 3 and summary["frames"] > 3 * 16
    pre = runner.invoke(
        app,
        [
            "preprocess",
            "--dataset",
            str(tmp_path / "sim"),
            "--out",
            str(tmp_path / "shards"),
            "--image-size",
            "32",
            "--json",
        ],
    )
    assert pre.exit_code == 0, pre.output
    counts = json.loads(pre.stdout[pre.stdout.index("{") :])
    assert counts["episodes_kept"] == 3 and counts["windows_kept"] > 0
    assert counts["windows_kept"] + counts["dropped_static"] == summary["frames"] - 3 * 15
    meta = json.loads((tmp_path / "shards" / "meta.json").read_text())
    assert meta["source"]["robot_type"] == "so101_follower"
    assert meta["source"]["action_names"][-1] == "gripper.pos"
    assert all(t.startswith("Pick up the ") for t in meta["tasks"])
    batch = next(iter(make_loader(ShardDataset(tmp_path / "shards", split="all"), 4)))
    assert batch.images.shape == (4, 2, 1, 3, 32, 32)
    assert batch.images.std() > 0.01  # real rendered frames, not blank
    assert torch.isfinite(batch.targets.trajectory).all()
