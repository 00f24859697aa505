"""The built wheels in a fresh venv, as a LeRobot user gets them.

Builds every distribution's wheel, installs them (and, through their dependencies,
LeRobot and torch from the package index, or uv's cache after ``uv sync``: ~30 s)
into a new venv, and runs ``lerobot-train --policy.type=sigma`` there, out of
process: LeRobot discovers the installed ``lerobot_policy_sigma`` distribution (and
``lerobot_env_sigma``'s ``--env.type=sigma_so101``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def uv(*args: object, **kwargs: object) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "uv", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, check=True, **kwargs)


def test_lerobot_train_from_the_wheel_in_a_fresh_venv(tmp_path):
    from sigma_lerobot.testing import write_random_walk_dataset

    dist, venv = tmp_path / "dist", tmp_path / "venv"
    uv("build", "--all-packages", "--wheel", "-o", dist, cwd=REPO)
    uv("venv", venv, "--python", sys.executable)
    wheels = sorted(dist.glob("*.whl"))
    assert any(w.name.startswith("lerobot_policy_sigma-") for w in wheels)
    assert any(w.name.startswith("lerobot_env_sigma-") for w in wheels)
    uv("pip", "install", "--python", venv / "bin" / "python", *wheels)
    write_random_walk_dataset(tmp_path / "ds", [24, 24], repo_id="sim/so101")
    args = [venv / "bin" / "lerobot-train", "--policy.type=sigma", "--dataset.repo_id=sim/so101"]
    args += [f"--dataset.root={tmp_path / 'ds'}", f"--output_dir={tmp_path / 'out'}"]
    args += ["--steps=2", "--batch_size=2", "--save_freq=2", "--num_workers=0"]
    args += ["--policy.push_to_hub=false", "--wandb.enable=false", "--policy.device=cpu"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        list(map(str, args)), capture_output=True, text=True, env=env, timeout=900
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "out" / "checkpoints" / "000002" / "pretrained_model").is_dir()
    # what lerobot-eval does at start: the env plugin registers its EnvConfig
    code = (
        "from lerobot.utils.import_utils import register_third_party_plugins\n"
        "from lerobot.envs.configs import EnvConfig\n"
        "register_third_party_plugins()\n"
        "print(EnvConfig.get_choice_class('sigma_so101').__module__)\n"
    )
    found = subprocess.run(
        [str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True, env=env
    )
    assert found.returncode == 0, found.stderr[-3000:]
    assert found.stdout.strip() == "lerobot_env_sigma.configuration_sigma_so101"
