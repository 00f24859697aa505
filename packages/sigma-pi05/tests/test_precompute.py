"""`sigma preprocess --base-policy`: π0.5's a_base once per window, resumable, used by training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from sigma_cli.main import app
from sigma_core import get_registry, validate_spec
from sigma_core.data import ShardDataset, collate
from sigma_core.testing import CONTRACT_DIMS as D
from sigma_lerobot.testing import write_random_walk_dataset
from sigma_pi05.base import Pi05Base
from sigma_pi05.config import Pi05BaseConfig
from sigma_pi05.testing import contract_source

CAMERAS = ["--camera-map", "overhead=observation.images.up"]
CAMERAS += ["--camera-map", "wrist=observation.images.side"]


def write_dataset(root: Path, lengths: list[int]) -> None:
    write_random_walk_dataset(root, lengths, repo_id="sim/pi05")


def write_spec(path: Path, source: dict, **base) -> Path:
    src = {k: (v.model_dump() if hasattr(v, "model_dump") else v) for k, v in source.items()}
    raw = {
        "model": {"dims": D.model_dump()},
        "base_policy": {"type": "pi05", **src, **base},
        "data": {"batch_size": 2},
        "train": {"stage": "sigma", "steps": 1, "allow_random_base": True},
    }
    path.write_text(json.dumps(raw))
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("pre")
    write_dataset(root / "ds", [20, 20, 20])
    source = contract_source(root / "pi05", D)
    return root, source, write_spec(root / "spec.json", source)


def preprocess(root: Path, spec: Path, *extra: str):
    args = ["preprocess", "--dataset", str(root / "ds"), "--out", str(root / "shards")]
    args += [*CAMERAS, "--spec", str(spec), "--base-policy", str(spec), "--shard-frames", "20"]
    args += ["--min-action-norm", "0", "--base-batch-size", "3", "--json", *extra]
    return CliRunner().invoke(app, args)


def test_precomputed_base_actions_equal_the_live_base_policy_and_resume(setup):
    root, source, spec = setup
    result = preprocess(root, spec)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output[result.output.index("{") :])
    windows = summary["windows_kept"]
    assert summary["base_actions"]["windows"] == windows and summary["base_actions"]["files"] == 3

    data = ShardDataset(root / "shards", split="all", base_actions=True)
    base = Pi05Base(Pi05BaseConfig(**source), D)
    base.set_data_stats(data.meta["stats"])
    picks = [0, len(data) // 2, len(data) - 1]
    batch = collate([data[i] for i in picks])
    live = base(batch)
    torch.testing.assert_close(batch.base_actions.trajectory, live.trajectory)
    torch.testing.assert_close(batch.base_actions.vector, live.vector)

    files = sorted((root / "shards" / "base_actions").glob("*.safetensors"))
    stamps = {f.name: f.stat().st_mtime_ns for f in files}
    files[1].write_bytes(b"torn")  # a crash mid-write leaves at most one bad file
    assert preprocess(root, spec).exit_code == 0
    again = {f.name: f.stat().st_mtime_ns for f in files}
    assert again[files[0].name] == stamps[files[0].name]  # intact files are skipped
    assert again[files[1].name] != stamps[files[1].name]
    redone = ShardDataset(root / "shards", split="all", base_actions=True)
    torch.testing.assert_close(collate([redone[i] for i in picks]).base_actions.chunk, live.chunk)


def test_another_base_policy_is_refused_and_training_reads_the_shards(setup, monkeypatch):
    root, source, spec = setup
    assert preprocess(root, spec).exit_code == 0
    other = write_spec(root / "other.json", source, noise_seed=1)
    refused = preprocess(root, other)
    assert refused.exit_code == 2
    assert "another base policy" in refused.output and "--overwrite-base-actions" in refused.output

    from sigma_core.train import Trainer

    def never(self, batch):
        raise AssertionError("the base policy ran although its actions are precomputed")

    monkeypatch.setattr(Pi05Base, "forward", never)
    raw = json.loads(spec.read_text())
    trainer = Trainer(validate_spec(raw, get_registry()), root / "shards", root / "run")
    assert trainer.precomputed
    assert trainer.train().steps == 1
    with pytest.warns(UserWarning, match="base actions of base_policy"):
        live = Trainer(
            validate_spec(json.loads(other.read_text()), get_registry()),
            root / "shards",
            root / "run2",
        )
    assert not live.precomputed
