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

    # --stats-from: a saved policy's statistics normalize the shards; bad input exits 2
    policy = tmp_path / "policy"
    policy.mkdir()
    stats = {"action": meta["stats"]["action"] | {"mean": [5.0] * 6}}
    (policy / "sigma.json").write_text(json.dumps({"format": 1, "stats": stats}))
    adopted = runner.invoke(
        app, [*args, "--out", str(tmp_path / "s4"), "--stats-from", str(policy)]
    )
    assert adopted.exit_code == 0, adopted.output
    meta4 = json.loads((tmp_path / "s4" / "meta.json").read_text())
    assert meta4["stats"]["action"]["mean"] == [5.0] * 6 and meta4["stats_from"] == str(policy)
    assert meta4["stats"]["observation.state"] == meta["stats"]["observation.state"]
    for where, message in ((tmp_path / "none", "not a saved policy (no sigma.json)"),
                           (tmp_path / "sim", "not a saved policy")):  # fmt: skip
        refused = runner.invoke(
            app, [*args, "--out", str(tmp_path / "s5"), "--stats-from", str(where)]
        )
        assert refused.exit_code == 2 and message in refused.stderr, refused.output
        assert not (tmp_path / "s5").exists()


def test_sim_set_reaches_the_source_config_and_bad_settings_exit_2(tmp_path):
    """--set KEY=VALUE: the calibrated task's settings (one cube and disc colour here)."""
    runner = CliRunner()
    base = ["data", "sim", "--episodes", "1", "--image-size", "32", "--json"]
    ok = runner.invoke(
        app,
        [
            *base,
            "--out",
            str(tmp_path / "sim"),
            "--set",
            "cube_colors=[red]",
            "--set",
            "target_colors=[blue]",
            "--set",
            "spawn_max_radius=0.12",
        ],
    )
    assert ok.exit_code == 0, ok.output
    summary = json.loads(ok.stdout[ok.stdout.index("{") :])
    import pandas as pd

    assert summary["tasks"] == 1
    tasks = pd.read_parquet(tmp_path / "sim" / "meta" / "tasks.parquet")
    assert list(tasks.index) == ["Pick up the red cube and place it on the blue circle."]
    recorded = json.loads((tmp_path / "sim" / "meta" / "sigma_sim.json").read_text())["config"]
    assert recorded["cube_colors"] == ["red"] and recorded["spawn_max_radius"] == 0.12
    for settings, message in (
        (["--set", "nope=1"], "nope: Extra inputs are not permitted"),
        (["--set", "spawn_max_radius"], "expected KEY=VALUE"),
        (["--set", "spawn_max_radius=0.01"], "spawn_max_radius must be greater"),
        (["--set", "cube_colors=[pink]"], "cube_colors.0"),
    ):
        bad = runner.invoke(app, [*base, "--out", str(tmp_path / "bad"), *settings])
        assert bad.exit_code == 2, (settings, bad.output)
        assert message in bad.stderr and "Traceback" not in bad.output, bad.stderr
        assert not (tmp_path / "bad").exists()
