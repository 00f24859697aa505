"""``lerobot-rollout`` drives a Sigma export on so101_nexus's simulated follower.

Out of process, as a user runs it: ``sigma-so101-follower`` writes the synthetic
calibration and prints the ``--robot.*`` flags; ``lerobot-rollout`` runs the base
strategy for a second, then the episodic strategy records two 1-second episodes
into a LeRobot dataset, which ``sigma preprocess`` reads back.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from lerobot_env_sigma.testing import SimPolicy, subprocess_env, tiny_sim_policy

TASK = "Pick up the red cube and place it on the blue circle."


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> SimPolicy:
    return tiny_sim_policy(tmp_path_factory.getbasetemp() / "sim-policy")


@pytest.fixture(scope="module")
def follower(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, str], list[str]]:
    """(environment, --robot.* flags): the helper run as a user runs it."""
    env = {**subprocess_env(), "HF_LEROBOT_CALIBRATION": str(tmp_path_factory.mktemp("calib"))}
    args = ["--image-size", "32", "--cube-color", "red", "--target-color", "blue"]
    helper = [sys.executable, "-m", "lerobot_env_sigma.follower", *args]
    result = subprocess.run(helper, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    calibration = Path(env["HF_LEROBOT_CALIBRATION"]) / "robots" / "sim_so_follower" / "sim.json"
    assert calibration.is_file() and str(calibration) in result.stderr
    motors = json.loads(calibration.read_text())
    assert [motors[m]["id"] for m in motors] == [1, 2, 3, 4, 5, 6]
    return env, shlex.split(result.stdout.replace("\\\n", " "))


def rollout(sim: SimPolicy, env: dict[str, str], robot: list[str], *extra: str) -> str:
    cmd = [sys.executable, "-m", "lerobot.scripts.lerobot_rollout", f"--policy.path={sim.export}"]
    cmd += ["--policy.device=cpu", *robot, "--play_sounds=false"]
    cmd += ["--return_to_initial_position=false", *extra]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    assert "Policy loaded: type=sigma" in log and "Rollout finished" in log, log[-4000:]
    return log


def test_the_helper_refuses_bad_input_with_a_message(capsys, tmp_path) -> None:
    from lerobot_env_sigma.follower import main

    assert main(["--cube-color", "pink", "--calibration-dir", str(tmp_path)]) == 2
    assert "--cube-color 'pink': one of red, orange" in capsys.readouterr().err
    assert main(["--scene", str(tmp_path / "missing")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # nothing written on bad input


def test_robot_args_name_the_scene_cameras_and_calibration(tmp_path) -> None:
    from lerobot_env_sigma.follower import FOLLOWER_ENV_ID, robot_args

    args = dict(a.split("=", 1) for a in robot_args("r1", 48, settings={"distractors": 1}))
    assert args["--robot.env_id"] == FOLLOWER_ENV_ID and args["--robot.id"] == "r1"
    assert json.loads(args["--robot.env_kwargs"]) == {"image_size": 48, "distractors": 1}
    cameras = json.loads(args["--robot.cameras"])
    assert {c["source"] for c in cameras.values()} == {"overhead_camera", "wrist_camera"}
    assert all(c["width"] == c["height"] == 48 for c in cameras.values())


@pytest.mark.slow  # the episodic test below runs the same loop out of process, and records
def test_lerobot_rollout_base_strategy_drives_a_sigma_export(sim, follower) -> None:
    env, robot = follower
    log = rollout(sim, env, robot, "--strategy.type=base", f"--task={TASK}", "--duration=1")
    assert "Robot connected: sim_so_follower" in log
    assert "Duration limit reached" in log


def test_lerobot_rollout_episodic_records_a_dataset_that_sigma_preprocesses(
    sim, follower, tmp_path
) -> None:
    env, robot = follower
    rec = tmp_path / "rollouts"
    rollout(
        sim, env, robot, "--strategy.type=episodic",
        "--dataset.repo_id=sim/rollout_sigma", f"--dataset.root={rec}",
        "--dataset.num_episodes=2", "--dataset.episode_time_s=1", "--dataset.reset_time_s=0",
        "--dataset.push_to_hub=false", "--dataset.video=false", f"--dataset.single_task={TASK}",
    )  # fmt: skip
    info = json.loads((rec / "meta" / "info.json").read_text())
    assert info["total_episodes"] == 2 and info["total_frames"] >= 2 * 8
    for cam in ("overhead", "wrist"):
        assert info["features"][f"observation.images.{cam}"]["shape"] == [32, 32, 3]
    assert info["features"]["observation.state"]["names"][-1] == "gripper.pos"
    frames = pq.read_table(next((rec / "data").rglob("*.parquet"))).to_pydict()
    gripper = [row[-1] for row in frames["observation.state"]]
    assert all(0.0 <= g <= 100.0 for g in gripper)  # LeRobot's units: gripper 0-100
    shards = tmp_path / "shards"
    pre = subprocess.run(
        [sys.executable, "-m", "sigma_cli", "preprocess", "--dataset", str(rec),
         "--out", str(shards), "--spec", str(sim.root / "spec.yaml"),
         "--val-fraction", "0", "--test-fraction", "0"],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert pre.returncode == 0, pre.stdout[-2000:] + pre.stderr[-3000:]
    meta = json.loads((shards / "meta.json").read_text())
    assert meta["counts"]["episodes_kept"] == 2
    assert meta["counts"]["frames_stored"] == info["total_frames"]
    assert meta["counts"]["windows_kept"] > 0
    assert meta["tasks"] == [TASK] or TASK in json.dumps(meta["tasks"])
    assert len(meta["stats"]["observation.state"]["mean"]) == 6
