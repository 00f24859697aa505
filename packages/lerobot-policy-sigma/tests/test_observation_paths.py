"""One observation processor: a raw frame of any size gives bit-identical tensors through
preprocessing (shards), the closed loop's Observer and the LeRobot policy; and a policy
trained by `sigma train`, exported and driven through LeRobot plans what SigmaPolicy.step
plans, with no dataset at hand."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from sigma_cli.main import app
from sigma_core.data import ObservationProcessor, ShardDataset, collate
from sigma_lerobot.testing import write_random_walk_dataset

REPO = Path(__file__).resolve().parents[3]
TASK = "pick up the red cube"
CAMERAS = {"up": "observation.images.up", "side": "observation.images.side"}


@pytest.fixture(scope="module", autouse=True)
def discovered() -> None:
    from lerobot.utils.import_utils import register_third_party_plugins

    register_third_party_plugins()


def small_spec(frames: int) -> dict:
    spec = yaml.safe_load((REPO / "configs" / "base-tiny.yaml").read_text())
    spec["model"]["dims"].pop("auxiliary_state_dim", None)
    spec["model"]["dims"] |= {"cameras": list(CAMERAS), "image_size": 32, "frame_history": frames}
    spec["model"]["vision"]["stem_channels"] = []
    spec["model"]["vision"]["patch_size"] = 8
    spec.pop("data", None)
    return spec


def cli(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args])


def raw_frames(root: Path, episode: int, frame: int) -> dict[str, np.ndarray]:
    """The stored frames of one dataset row as a camera gives them: (H, W, 3) uint8."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from sigma_core.data import to_uint8_frames

    ds = LeRobotDataset("sim/so101", root=root)
    rows = ds.hf_dataset.filter(
        lambda r: r["episode_index"] == episode and r["frame_index"] == frame
    )
    row = rows[0]  # LeRobot decodes the stored PNGs to (3, H, W) float u / 255
    out = {c: to_uint8_frames(row[k])[0].permute(1, 2, 0).numpy() for c, k in CAMERAS.items()}
    out["state"] = np.asarray(row["observation.state"], dtype=np.float32)
    return out


@pytest.mark.parametrize("height, width", [(480, 640), (61, 97)])
def test_a_raw_frame_gives_the_same_tensors_through_all_three_paths(tmp_path, height, width):
    from lerobot.policies.utils import prepare_observation_for_inference

    from lerobot_policy_sigma.configuration_sigma import SigmaConfig
    from lerobot_policy_sigma.modeling_sigma import SigmaPolicy
    from lerobot_policy_sigma.processor_sigma import make_sigma_pre_post_processors
    from sigma_sim.rollout import Observer

    frames = 2  # with a frame history: the previous frame and the current one
    write_random_walk_dataset(tmp_path / "ds", [20, 20], size=(height, width))
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(small_spec(frames)))
    args = ["preprocess", "--dataset", tmp_path / "ds", "--out", tmp_path / "shards"]
    args += ["--spec", spec, "--min-action-norm", "0", "--val-fraction", "0"]
    args += ["--test-fraction", "0", "--horizon", "4", "--chunk", "2"]
    result = cli(*args, *(f"--camera-map={c}={k}" for c, k in CAMERAS.items()))
    assert result.exit_code == 0, result.output

    # 1. preprocessing: the shards' window at frame 3 of episode 1, through the loader
    shards = ShardDataset(tmp_path / "shards", split="all", frame_history=frames)
    i = shards.window_frames().index((1, 3))
    batch = collate([shards[i]])
    stats = shards.meta["stats"]
    raw = [raw_frames(tmp_path / "ds", 1, t) for t in (0, 1, 2, 3)]

    # 2. the closed loop's Observer (the simulator hands it HWC uint8 frames)
    processor = ObservationProcessor(list(CAMERAS), 32, frames, stats)
    observer = Observer({c: c for c in CAMERAS}, processor, (-0.17, 1.74), torch.device("cpu"))
    for obs in raw:
        loop = observer.batch({**obs, "state": np.zeros(6, np.float32)}, TASK)
    state = processor.normalize(torch.from_numpy(raw[-1]["state"]))

    # 3. LeRobot: prepare_observation_for_inference -> the policy's processors -> policy
    config = SigmaConfig(spec_dict=small_spec(frames), normalization_stats=stats, device="cpu")
    from lerobot.configs.types import FeatureType, PolicyFeature

    config.input_features = {
        k: PolicyFeature(type=FeatureType.VISUAL, shape=(3, height, width))
        for k in CAMERAS.values()
    } | {"observation.state": PolicyFeature(type=FeatureType.STATE, shape=(6,))}
    config.output_features = {"action": PolicyFeature(type=FeatureType.ACTION, shape=(6,))}
    policy = SigmaPolicy(config).eval()
    pre, _ = make_sigma_pre_post_processors(config)
    for obs in raw:
        observation = {key: obs[cam].copy() for cam, key in CAMERAS.items()}
        observation["observation.state"] = obs["state"].copy()
        observation = prepare_observation_for_inference(observation, torch.device("cpu"), TASK)
        lerobot = policy.sigma_batch(pre(observation))

    assert batch.images.shape == (1, 2, frames, 3, 32, 32)
    assert torch.equal(loop.images, batch.images)
    assert torch.equal(lerobot.images, batch.images)
    assert torch.equal(state[None], batch.state) and torch.equal(lerobot.state, batch.state)
    # letterboxed, not stretched: the padding rows (or columns) are black
    pad = round((1 - min(height, width) / max(height, width)) * 32 / 2) - 1
    band = batch.images[..., :pad, :] if width > height else batch.images[..., :pad]
    assert pad > 0 and band.max() == 0


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """`sigma train` on shards of a LeRobot dataset, then `sigma export`; the data deleted."""
    import shutil

    root = tmp_path_factory.mktemp("exported")
    write_random_walk_dataset(root / "ds", [24, 24, 24], size=(48, 64))
    spec = small_spec(2)
    spec["data"] = {"path": str(root / "shards"), "batch_size": 4}
    spec["train"] = {**spec["train"], "steps": 2}
    (root / "spec.yaml").write_text(yaml.safe_dump(spec))
    args = ["preprocess", "--dataset", root / "ds", "--out", root / "shards"]
    args += ["--spec", root / "spec.yaml", "--min-action-norm", "0"]
    result = cli(*args, *(f"--camera-map={c}={k}" for c, k in CAMERAS.items()))
    assert result.exit_code == 0, result.output
    result = cli("train", root / "spec.yaml", "--out", root / "run")
    assert result.exit_code == 0, result.output
    result = cli("export", root / "run", root / "export")
    assert result.exit_code == 0, result.output
    frames = [raw_frames(root / "ds", 0, t) for t in range(12)]
    stats = json.loads((root / "shards" / "meta.json").read_text())["stats"]
    shutil.rmtree(root / "ds")
    shutil.rmtree(root / "shards")
    return root / "export", frames, stats


def test_an_export_driven_through_lerobot_plans_what_sigma_step_plans(exported, monkeypatch):
    from lerobot.policies.factory import get_policy_class, make_pre_post_processors
    from lerobot.policies.utils import prepare_observation_for_inference

    from sigma_core import SigmaPolicy
    from sigma_core.data import ActionSpace

    folder, raw, stats = exported
    monkeypatch.chdir(folder.parent)
    sigma = SigmaPolicy.from_pretrained(folder).eval()
    assert sigma.stats == {k: v for k, v in stats.items() if k in sigma.stats}
    assert set(sigma.stats) >= {"observation.state", "action"}
    lerobot = get_policy_class("sigma").from_pretrained(str(folder))
    pre, post = make_pre_post_processors(lerobot.config, pretrained_path=str(folder))

    processor = ObservationProcessor.for_policy(sigma.dims, sigma.stats)
    space = ActionSpace(sigma.spec.data.actions, sigma.stats)
    sigma.reset()
    lerobot.reset()
    torch.manual_seed(0)
    want, got, got_units, want_units = [], [], [], []
    for obs in raw:  # 12 steps: the plan queue is refilled (memory carried) on the way
        batch = processor({c: obs[c] for c in CAMERAS}, obs["state"], TASK)
        torch.manual_seed(len(want))
        want.append(sigma.step(batch))
        want_units.append(space.action.denormalize(space.decode(want[-1], batch.state)))
        observation = {key: obs[cam].copy() for cam, key in CAMERAS.items()}
        observation["observation.state"] = obs["state"].copy()
        observation = prepare_observation_for_inference(observation, torch.device("cpu"), TASK)
        torch.manual_seed(len(got))
        got.append(lerobot.select_action(pre(observation)))
        got_units.append(post(got[-1]))
    assert torch.equal(torch.stack(got), torch.stack(want))
    assert torch.equal(torch.stack(got_units), torch.stack(want_units))
