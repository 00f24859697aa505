"""The so101-pickplace data source: schema, determinism, resume, kill repair, errors.

Recording runs at 32x32 pixels to stay fast on 2 CPU cores (the whole file takes
under a minute once the low-poly mesh cache exists; building it takes ~6 s).
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sigma_core import SigmaUserError
from sigma_lerobot.schema import JOINTS
from sigma_sim.config import PALETTE, So101PickPlaceConfig

REPO_ID = "sigma/so101_pickplace_sim"
NAMES = list(JOINTS)
TASK = re.compile(r"^Pick up the (\w+) cube and place it on the (\w+) circle\.$")


@pytest.fixture(scope="module", autouse=True)
def _offline() -> Iterator[None]:
    mp = pytest.MonkeyPatch()
    mp.setenv("HF_HUB_OFFLINE", "1")  # a broken dataset must fail, not wait for the hub
    yield
    mp.undo()


def small(**kw: object) -> So101PickPlaceConfig:
    return So101PickPlaceConfig(**{"image_size": 32, **kw})


def source(cfg: So101PickPlaceConfig):
    from sigma_sim.source import So101PickPlace

    return So101PickPlace(cfg)


def actions(root: Path) -> list[np.ndarray]:
    """Per-episode action arrays of the dataset at ``root`` (read with pandas)."""
    import pandas as pd

    frames = pd.concat(
        [
            pd.read_parquet(p, columns=["episode_index", "action"])
            for p in sorted(root.glob("data/*/*.parquet"))
        ]
    )
    return [np.stack(group["action"].to_numpy()) for _, group in frames.groupby("episode_index")]


@pytest.fixture(scope="module")
def recorded(
    tmp_path_factory: pytest.TempPathFactory, three_demos: dict[str, Any]
) -> dict[str, object]:
    """Seed 0: 2 episodes then resumed to 3 (``resumed``), and 3 in one go (``oneshot``,
    the recording the root conftest.py shares with other tests)."""
    base = tmp_path_factory.mktemp("sim")
    cfg = small()
    resumed, oneshot = base / "resumed", three_demos["path"]
    first = source(cfg).write(out_dir=str(resumed), episodes=2, seed=0, progress=False)
    first_actions = actions(resumed)
    second = source(cfg).write(out_dir=str(resumed), episodes=3, seed=0, progress=False)
    whole = three_demos["summary"]
    return {
        "cfg": cfg,
        "resumed": resumed,
        "oneshot": oneshot,
        "first": first,
        "first_actions": first_actions,
        "second": second,
        "whole": whole,
    }


# -- registry and config (no simulation) ----------------------------------------


def test_registered_through_the_entry_point() -> None:
    from sigma_core import load_registry

    info = load_registry(env={"SIGMA_LOAD_PLUGINS": "sim"}).get("data_source", "so101-pickplace")
    assert info.config_class is So101PickPlaceConfig
    assert info.distribution == "sigma-vla-sim"
    from sigma_sim.source import So101PickPlace

    assert info.load() is So101PickPlace


def test_plugin_and_config_import_neither_torch_nor_mujoco() -> None:
    code = (
        "import sys, sigma_sim.plugin, sigma_sim.config; "
        "bad = {'torch', 'mujoco', 'so101_nexus', 'lerobot'} & set(sys.modules); "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="extra"):
        So101PickPlaceConfig(image_sz=32)
    with pytest.raises(ValueError, match="cube_colors"):
        So101PickPlaceConfig(distractors=2, cube_colors=["red", "blue"])
    with pytest.raises(ValueError, match="spawn_max_radius"):
        So101PickPlaceConfig(spawn_min_radius=0.2, spawn_max_radius=0.1)
    with pytest.raises(ValueError):
        So101PickPlaceConfig(image_size=8)
    key = So101PickPlaceConfig(commit_every=5).content_key()
    assert key == So101PickPlaceConfig().content_key()
    assert "commit_every" not in key and key["image_size"] == 96


def test_palette_is_the_simulators() -> None:
    from so101_nexus.constants import CUBE_COLOR_MAP

    assert list(PALETTE) == list(CUBE_COLOR_MAP)


def test_control_period_is_one_frame() -> None:
    from sigma_sim.scene import physics_for_fps

    assert physics_for_fps(50) == (pytest.approx(0.005), 4)
    timestep, substeps = physics_for_fps(30)
    assert substeps == 7 and timestep <= 0.005
    assert substeps * timestep == pytest.approx(1 / 30)


def test_lowpoly_meshes_change_pictures_not_physics() -> None:
    import mujoco
    import so101_nexus

    from sigma_sim.render import lowpoly_model_dir, physics_fingerprint

    low_dir = lowpoly_model_dir(1000)
    assert lowpoly_model_dir(1000) == low_dir  # cached
    full = mujoco.MjModel.from_xml_path(str(so101_nexus.get_so101_mujoco_model_path()))
    low = mujoco.MjModel.from_xml_path(str(low_dir / "so101.xml"))
    want, got = physics_fingerprint(full), physics_fingerprint(low)
    for key in want:
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)
    visual = [i for i in range(full.nmesh) if "_part" not in full.mesh(i).name]
    assert low.mesh_facenum[visual].sum() < 0.2 * full.mesh_facenum[visual].sum()
    assert max(low.mesh_facenum[visual]) <= 2456  # the kept camera mount is the largest


# -- recording ------------------------------------------------------------------


def test_dataset_reads_back_with_the_schema(recorded: dict) -> None:
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    ds = LeRobotDataset(REPO_ID, root=recorded["oneshot"])
    assert ds.meta.total_episodes == 3 and ds.fps == 30
    assert ds.meta.info.codebase_version == "v3.0"
    assert ds.meta.robot_type == "so101_follower"
    for key in ("observation.state", "action"):
        assert ds.features[key]["dtype"] == "float32"
        assert tuple(ds.features[key]["shape"]) == (6,)
        assert ds.features[key]["names"] == NAMES
    for key in ("observation.images.overhead", "observation.images.wrist"):
        assert ds.features[key]["dtype"] == "image"
        assert tuple(ds.features[key]["shape"]) == (32, 32, 3)
    item = ds[5]
    assert item["observation.images.wrist"].shape == (3, 32, 32)
    assert item["observation.state"].dtype.is_floating_point
    tasks = list(ds.meta.tasks.index)
    assert tasks and all(TASK.match(t) for t in tasks), tasks
    assert len(ds) == recorded["whole"]["frames"]


def test_environment_state_is_recorded_and_reaches_the_shards(
    recorded: dict, tmp_path: Path
) -> None:
    """observation.environment_state: the documented layout, the simulator's poses at the
    reset, and carried by sigma preprocess into the shards, statistics and loader."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from sigma_core.data import ENVIRONMENT_STATE, PreprocessOptions, ShardDataset, preprocess
    from sigma_lerobot.dataset import LeRobotSource
    from sigma_sim.journal import Journal
    from sigma_sim.record import attempt_seeds
    from sigma_sim.scene import environment_state_names, make_env, reset_episode

    cfg = recorded["cfg"]
    colors = list(cfg.cube_colors)
    names = environment_state_names(colors)
    assert len(names) == 8 + 4 * len(colors) and names[:3] == ["cube.x", "cube.y", "cube.z"]
    ds = LeRobotDataset(REPO_ID, root=recorded["oneshot"])
    assert ds.features[ENVIRONMENT_STATE]["names"] == names
    first = ds[0][ENVIRONMENT_STATE].numpy()
    # the reset pose of the scene of episode 0's attempt
    attempt = Journal.load(recorded["oneshot"]).episode_attempts[0]
    env = make_env(cfg)
    try:
        _, _, episode = reset_episode(env, attempt_seeds(0, attempt)[0], colors)
    finally:
        env.close()
    np.testing.assert_allclose(first[:3], episode.cube_pos, atol=1e-6)
    np.testing.assert_allclose(first[5:8], episode.goal_pos, atol=1e-6)
    block = names.index(f"{episode.cube_color}_cube.x")
    np.testing.assert_allclose(first[block : block + 3], episode.cube_pos, atol=1e-6)
    present = first[[names.index(f"{c}_cube.present") for c in colors]]
    assert present.sum() == 1.0  # no distractors: only the named cube is on the table
    np.testing.assert_allclose(np.hypot(first[3], first[4]), 1.0, atol=1e-5)

    cams = ["overhead", "wrist"]
    opts = PreprocessOptions(cameras=cams, image_size=32, val_fraction=0, test_fraction=0)
    meta = preprocess(LeRobotSource(str(recorded["oneshot"]), cams), tmp_path / "s", opts)
    assert len(meta["stats"][ENVIRONMENT_STATE]["mean"]) == len(names)
    assert meta["source"]["environment_state_names"] == names
    raw = ShardDataset(tmp_path / "s", "all", normalize=False, environment_state=len(names))
    norm = ShardDataset(tmp_path / "s", "all", environment_state=len(names))
    row = raw.window_frames()[0]
    assert raw[0]["environment_state"].shape == (len(names),)
    np.testing.assert_allclose(raw[0]["environment_state"].numpy(), ds[row[1]][ENVIRONMENT_STATE])
    assert norm.environment_norm is not None
    np.testing.assert_allclose(
        norm[0]["environment_state"], norm.environment_norm.normalize(raw[0]["environment_state"])
    )
    assert "environment_state" not in ShardDataset(tmp_path / "s", "all")[0]
    with pytest.raises(SigmaUserError, match=r"environment_state has 40 values.*is 7"):
        ShardDataset(tmp_path / "s", "all", environment_state=7)


def test_actions_are_within_the_joint_limits(recorded: dict) -> None:
    import mujoco
    import so101_nexus

    model = mujoco.MjModel.from_xml_path(str(so101_nexus.get_so101_mujoco_model_path()))
    limits = np.degrees(np.array([model.joint(n[:-4]).range for n in NAMES[:5]]))
    for acts in actions(recorded["oneshot"]):
        assert acts.dtype == np.float32 and acts.shape[1] == 6
        assert (acts[:, :5] >= limits[:, 0] - 1e-3).all() and (
            acts[:, :5] <= limits[:, 1] + 1e-3
        ).all()
        assert acts[:, 5].min() >= 0.0 and acts[:, 5].max() <= 100.0
        assert acts[:, 5].max() > 20.0 and acts[:, 5].min() < 1.0  # opens, then squeezes


def test_summary(recorded: dict) -> None:
    whole = recorded["whole"]
    assert whole["episodes"] == 3 and whole["attempts"] >= 3
    assert whole["yield"] == pytest.approx(3 / whole["attempts"])
    assert whole["frames"] == whole["new_frames"] > 3 * 30
    assert whole["cameras"] == ["observation.images.overhead", "observation.images.wrist"]
    assert whole["repo_id"] == REPO_ID and whole["fps"] == 30
    assert whole["frames_per_second"] > 0


def test_same_seed_gives_identical_episodes(recorded: dict) -> None:
    first, whole = recorded["first_actions"], actions(recorded["oneshot"])
    assert len(first) == 2
    for a, b in zip(first, whole[:2], strict=True):
        np.testing.assert_array_equal(a, b)


def test_resume_equals_one_go(recorded: dict) -> None:
    resumed, whole = actions(recorded["resumed"]), actions(recorded["oneshot"])
    assert len(resumed) == 3
    for a, b in zip(resumed, whole, strict=True):
        np.testing.assert_array_equal(a, b)
    assert recorded["second"]["attempts"] == recorded["whole"]["attempts"]
    journal = json.loads((recorded["resumed"] / "meta/sigma_sim.json").read_text())
    assert journal["episodes"] == 3 and journal["seed"] == 0


def test_enough_episodes_means_no_work(recorded: dict) -> None:
    out = source(recorded["cfg"]).write(
        out_dir=str(recorded["oneshot"]), episodes=2, seed=0, progress=False
    )
    assert out["episodes"] == 3 and out["new_frames"] == 0


def test_an_interrupted_commit_is_rolled_back(recorded: dict, tmp_path: Path) -> None:
    """What a kill inside save_episode/finalize leaves behind is removed on resume."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    root = tmp_path / "ds"
    shutil.copytree(recorded["oneshot"], root)
    info = root / "meta/info.json"
    good = info.read_bytes()
    stray = root / "data/chunk-000/file-099.parquet"
    stray.write_bytes(b"PAR1 no footer")  # a parquet file a kill left open
    (root / "meta/episodes/chunk-000/file-099.parquet").write_bytes(b"PAR1")
    info.write_text(info.read_text().replace('"total_episodes": 3', '"total_episodes": 4'))
    out = source(recorded["cfg"]).write(out_dir=str(root), episodes=3, seed=0, progress=False)
    assert out["episodes"] == 3 and not stray.exists() and info.read_bytes() == good
    assert LeRobotDataset(REPO_ID, root=root).meta.total_episodes == 3


def test_user_errors(recorded: dict, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(SigmaUserError, match="not a dataset recorded by"):
        source(small()).write(out_dir=str(other), episodes=1, progress=False)
    with pytest.raises(SigmaUserError, match=r"config\.image_size"):
        source(small(image_size=48)).write(
            out_dir=str(recorded["oneshot"]), episodes=4, progress=False
        )
    with pytest.raises(SigmaUserError, match="seed"):
        source(small()).write(out_dir=str(recorded["oneshot"]), episodes=4, seed=1, progress=False)
    with pytest.raises(SigmaUserError, match="episodes"):
        source(small()).write(out_dir=str(tmp_path / "new"), episodes=-1, progress=False)


def test_distractors_never_share_the_cube_colour() -> None:
    from sigma_sim.record import attempt_seeds
    from sigma_sim.scene import make_env, reset_episode

    cfg = small(distractors=3)
    env = make_env(cfg)
    try:
        for attempt in range(6):
            seed, _ = attempt_seeds(0, attempt)
            _, _, ep = reset_episode(env, seed, list(cfg.cube_colors))
            assert len(ep.distractor_colors) == 3
            assert ep.cube_color not in ep.distractor_colors
            match = TASK.match(ep.task)
            assert match and match.groups() == (ep.cube_color, ep.target_color)
            assert math.dist(ep.cube_pos[:2], (0.15, 0.0)) <= 0.15 + 1e-6
    finally:
        env.close()


def test_distractors_keep_clear_of_the_goal_and_the_cube() -> None:
    """The quickstart's transfer scene (narrow arc, two distractors): so101_nexus' fallback
    put distractors on the goal disc and into the cube; ``clear_distractors`` keeps its
    clearances (goal centre >= 3.75 cm + bounding radius, cube >= 4 cm + two radii) and
    leaves the goal and the task where the seed put them."""
    import numpy as np

    from sigma_sim.record import attempt_seeds
    from sigma_sim.scene import environment_state, make_env, reset_episode

    crowded = {
        "cube_colors": ["red", "green", "blue"],
        "target_colors": ["blue"],
        "spawn_min_radius": 0.07,
        "spawn_max_radius": 0.12,
        "spawn_angle_deg": 30.0,
        "distractors": 2,
    }
    layouts: dict[bool, list[tuple[str, np.ndarray, float, float]]] = {}
    for clear in (True, False):
        cfg = small(**crowded, clear_distractors=clear)
        env, colors = make_env(cfg), list(cfg.cube_colors)
        try:
            layouts[clear] = []
            for attempt in range(8):
                _, _, ep = reset_episode(env, attempt_seeds(0, attempt)[0], colors)
                s = environment_state(env, colors)
                others = [s[8 + 4 * k : 10 + 4 * k] for k in range(3) if colors[k] != ep.cube_color]
                to_goal = min(math.dist(xy, s[5:7]) for xy in others)
                to_cube = min(math.dist(xy, s[:2]) for xy in others)
                layouts[clear].append((ep.task, s[5:7].copy(), to_goal, to_cube))
        finally:
            env.close()
    pairs = zip(layouts[True], layouts[False], strict=True)
    for (task, goal, to_goal, to_cube), (old_task, old_goal, *_) in pairs:
        assert task == old_task and np.allclose(goal, old_goal)  # only distractors moved
        assert to_goal >= 0.0375 + 0.0125 and to_cube >= 0.04 + 2 * 0.0125
    assert min(g for *_, g, _ in layouts[False]) < 0.05  # the old layout did overlap


def test_clear_distractors_is_part_of_the_content_only_with_distractors() -> None:
    assert "clear_distractors" not in small().content_key()  # one-cube recordings resume
    assert small(distractors=1).content_key()["clear_distractors"] is True
