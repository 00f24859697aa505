"""`base_policy: lerobot`: Sigma on top of an ACT policy trained with LeRobot's own code."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from sigma_cli.main import app
from sigma_core import SigmaBatch, SigmaPolicy, SigmaUserError, get_registry, validate_spec
from sigma_core.data import ShardDataset, collate
from sigma_core.testing import CONTRACT_DIMS
from sigma_lerobot.base import LeRobotBase
from sigma_lerobot.config import LeRobotBaseConfig
from sigma_lerobot.testing import (
    save_small_act,
    small_act_config,
    small_diffusion_config,
    write_random_walk_dataset,
)

D = CONTRACT_DIMS.model_copy(update={"horizon": 16})
CAMERAS = {"overhead": "observation.images.up", "wrist": "observation.images.side"}
TASK = "pick up the red cube"


def write_dataset(root: Path, lengths: list[int]) -> None:
    write_random_walk_dataset(root, lengths, repo_id="sim/act")


def train_policy(kind: str, dataset: Path, out: Path, steps: int = 3) -> Path:
    """A small ``kind`` (act, diffusion) policy trained a few steps by LeRobot's own
    forward on ``dataset`` (LeRobot's delta timestamps, processors from its stats) and
    saved like lerobot-train does (policy + pre/post-processors)."""
    from lerobot.configs.types import FeatureType, PolicyFeature
    from lerobot.datasets.factory import resolve_delta_timestamps
    from lerobot.datasets.lerobot_dataset import LeRobotDataset, LeRobotDatasetMetadata
    from lerobot.policies.factory import get_policy_class, make_pre_post_processors

    inputs = {
        key: PolicyFeature(type=FeatureType.VISUAL, shape=(3, 32, 32)) for key in CAMERAS.values()
    }
    inputs["observation.state"] = PolicyFeature(type=FeatureType.STATE, shape=(6,))
    make = {"act": small_act_config, "diffusion": small_diffusion_config}[kind]
    config = make(D, input_features=inputs)
    meta = LeRobotDatasetMetadata("sim/act", root=dataset)
    delta = resolve_delta_timestamps(config, meta)
    ds = LeRobotDataset("sim/act", root=dataset, delta_timestamps=delta)
    torch.manual_seed(0)
    policy = get_policy_class(kind)(config)
    pre, post = make_pre_post_processors(config, dataset_stats=ds.meta.stats)
    loader = torch.utils.data.DataLoader(ds, batch_size=4, shuffle=True)
    opt = torch.optim.AdamW(policy.parameters(), lr=1e-4)
    policy.train()
    for _, batch in zip(range(steps), loader, strict=False):
        loss, _ = policy(pre(batch))
        opt.zero_grad()
        loss.backward()
        opt.step()
    policy.save_pretrained(out)
    pre.save_pretrained(out)
    post.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def act_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("act")
    write_dataset(root / "ds", [24, 24, 24])
    return root, train_policy("act", root / "ds", root / "act" / "pretrained_model")


def spec_file(path: Path, policy_dir: Path, **train) -> Path:
    raw = {
        "model": {"dims": D.model_dump()},
        "base_policy": {"type": "lerobot", "path": str(policy_dir), "camera_map": CAMERAS},
        "data": {"batch_size": 2},
        "train": {"stage": "sigma", "steps": 1, **train},
    }
    path.write_text(json.dumps(raw))
    return path


def act_twice(base: LeRobotBase, n: int) -> tuple[torch.Tensor, SigmaBatch, Any]:
    """A seeded random batch of ``n``, the base's actions on it, checked to be the same
    on a second call (a fixed seed makes even a stochastic policy deterministic)."""
    g = torch.Generator().manual_seed(0)
    images = torch.rand(n, 2, 1, 3, 32, 32, generator=g)
    batch = SigmaBatch(images, torch.randn(n, 6, generator=g), [TASK] * n)
    a = base(batch)
    assert a.trajectory.shape == (n, 16, 6) and torch.equal(a.trajectory, base(batch).trajectory)
    return images, batch, a


def test_a_base_equals_the_act_policy_through_its_saved_processors(act_run):
    _, policy_dir = act_run
    base = LeRobotBase(LeRobotBaseConfig(path=str(policy_dir), camera_map=CAMERAS), D)
    stats = {
        key: {s: [0.3] * 6 if s == "mean" else [2.0] * 6 for s in ("mean", "std")}
        | {s: [-9.0] * 6 for s in ("q01", "min")}
        | {s: [9.0] * 6 for s in ("q99", "max")}
        for key in ("observation.state", "action")
    }
    base.set_data_stats(stats)
    images, batch, a = act_twice(base, 3)

    from lerobot.policies.factory import make_pre_post_processors

    pre, post = make_pre_post_processors(base.policy.config, pretrained_path=str(policy_dir))
    obs = {"observation.state": batch.state * 2.0 + 0.3, "task": [TASK] * 3}
    obs |= {CAMERAS["overhead"]: images[:, 0, -1], CAMERAS["wrist"]: images[:, 1, -1]}
    want = (post(base.policy.predict_action_chunk(pre(obs))) - 0.3) / 2.0
    torch.testing.assert_close(a.trajectory, want[:, :16])
    torch.testing.assert_close(a.vector, want[:, 0])


def test_sigma_trains_on_top_of_act_with_precomputed_base_actions(act_run, monkeypatch):
    root, policy_dir = act_run
    spec = spec_file(root / "spec.json", policy_dir)
    args = ["preprocess", "--dataset", str(root / "ds"), "--out", str(root / "shards")]
    args += ["--spec", str(spec), "--base-policy", str(spec), "--min-action-norm", "0"]
    for cam, key in CAMERAS.items():
        args += ["--camera-map", f"{cam}={key}"]
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    data = ShardDataset(root / "shards", split="all", base_actions=True)
    raw = json.loads(spec.read_text())
    policy = SigmaPolicy(validate_spec(raw, get_registry()))
    policy.base_policy.set_data_stats(data.meta["stats"])
    batch = collate([data[i] for i in (0, 5, len(data) - 1)])
    live = policy.base_policy(batch)
    torch.testing.assert_close(batch.base_actions.trajectory, live.trajectory)

    from sigma_core.train import Trainer

    def never(self, batch):
        raise AssertionError("ACT ran although its actions are precomputed")

    monkeypatch.setattr(LeRobotBase, "forward", never)
    trainer = Trainer(validate_spec(raw, get_registry()), root / "shards", root / "run")
    assert trainer.precomputed and trainer.train().steps == 1
    meta = json.loads((root / "run" / "policy" / "sigma.json").read_text())
    assert meta["pretrained"]["base_policy.policy"]["source"] == str(policy_dir)


def test_bad_policy_directories_are_clear_errors(act_run, tmp_path):
    _, policy_dir = act_run
    cfg = {"camera_map": CAMERAS}
    with pytest.raises(SigmaUserError, match=r"action dim 6 and state dim 6; .* 7 and 6"):
        LeRobotBase(
            LeRobotBaseConfig(path=str(policy_dir), **cfg), D.model_copy(update={"action_dim": 7})
        )
    bad = {"overhead": "observation.images.front", "wrist": CAMERAS["wrist"]}
    with pytest.raises(SigmaUserError, match=r"'overhead' -> 'observation.images.front' is not"):
        LeRobotBase(LeRobotBaseConfig(path=str(policy_dir), camera_map=bad), D)
    with pytest.raises(SigmaUserError, match="not a LeRobot policy directory"):
        LeRobotBase(LeRobotBaseConfig(path=str(tmp_path)), D)
    broken = save_small_act(tmp_path / "broken", D)
    from safetensors.torch import load_file, save_file

    state = load_file(str(broken / "model.safetensors"))
    del state[sorted(state)[0]]
    save_file(state, str(broken / "model.safetensors"))
    with pytest.raises(SigmaUserError, match=r"act policy's weights did not load \(1 missing"):
        LeRobotBase(LeRobotBaseConfig(path=str(broken)), D)


def test_a_diffusion_policy_is_a_deterministic_base_equal_to_its_own_chunk(act_run):
    """Diffusion (stochastic, an observation-history axis): fixed seed, LeRobot's chunk."""
    root, _ = act_run
    policy_dir = train_policy("diffusion", root / "ds", root / "diffusion" / "pretrained_model")
    base = LeRobotBase(LeRobotBaseConfig(path=str(policy_dir), camera_map=CAMERAS), D)
    images, batch, a = act_twice(base, 2)

    from lerobot.policies.factory import make_pre_post_processors

    pre, post = make_pre_post_processors(base.policy.config, pretrained_path=str(policy_dir))
    obs = {"observation.state": batch.state[:, None], "task": [TASK] * 2}
    obs |= {CAMERAS["overhead"]: images[:, 0, :1], CAMERAS["wrist"]: images[:, 1, :1]}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # noise_seed
        want = post(base.policy.predict_action_chunk(pre(obs)))
    torch.testing.assert_close(a.trajectory, want[:, :16])


def test_reading_a_policy_config_leaves_no_temporary_file(act_run, tmp_path, monkeypatch):
    """LeRobot's config loader writes a NamedTemporaryFile(delete=False) it never removes;
    ours runs it in a scratch directory, so nothing is left in the temp dir."""
    import tempfile

    from sigma_lerobot.base import read_policy_config

    _, policy_dir = act_run
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    config = read_policy_config(policy_dir)
    assert config.type == "act"
    assert list(scratch.iterdir()) == [] and tempfile.tempdir == str(scratch)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text("{not json")
    with pytest.raises(SigmaUserError, match=r"bad/config.json: not a LeRobot policy config"):
        read_policy_config(tmp_path / "bad")
    assert tempfile.tempdir == str(scratch)
