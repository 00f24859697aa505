"""End to end through the CLI: sigma data sim -> sigma preprocess -> loader batches."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from typer.testing import CliRunner

from sigma_cli.main import app
from sigma_core import load_spec
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

    # --spec takes the dims from a run file (this once died with AttributeError)
    repo = Path(__file__).resolve().parents[1]
    args = ["preprocess", "--dataset", str(tmp_path / "sim"), "--image-size", "32", "--json"]
    spec = ["--spec", str(repo / "configs" / "default.yaml")]
    pre2 = runner.invoke(app, [*args, "--out", str(tmp_path / "s2"), *spec])
    assert pre2.exit_code == 0, pre2.output
    meta2 = json.loads((tmp_path / "s2" / "meta.json").read_text())
    dims = load_spec(repo / "configs" / "default.yaml").model.dims
    assert meta2["options"]["cameras"] == dims.cameras
    assert (meta2["options"]["horizon"], meta2["options"]["chunk"]) == (
        dims.horizon,
        dims.chunk_horizon,
    )
    assert meta2["counts"]["windows_kept"] == counts["windows_kept"]
    wide = tmp_path / "wide.yaml"
    wide.write_text("model:\n  dims:\n    action_dim: 7\n")
    bad = runner.invoke(app, [*args, "--out", str(tmp_path / "s3"), "--spec", str(wide)])
    assert bad.exit_code == 2
    assert "does not match the spec's model.dims: action_dim: data 6, spec 7" in bad.stderr
    assert "Traceback" not in bad.output and not (tmp_path / "s3").exists()
