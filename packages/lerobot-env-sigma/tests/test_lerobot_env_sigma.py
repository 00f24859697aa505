"""``--env.type=sigma_so101``: LeRobot's evaluation on the scene ``sigma eval --sim`` uses.

One tiny stage-base policy is trained on three recorded 32 px demonstrations
(:func:`lerobot_env_sigma.testing.tiny_sim_policy`, about a minute), exported, and
evaluated both ways on 1-second episodes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from lerobot_env_sigma.testing import SimPolicy, subprocess_env, tiny_sim_policy


@pytest.fixture(scope="module", autouse=True)
def discovered() -> None:
    """What LeRobot's tools do at start: import every installed lerobot_env_/policy_ package."""
    from lerobot.utils.import_utils import register_third_party_plugins

    register_third_party_plugins()


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> SimPolicy:
    return tiny_sim_policy(tmp_path_factory.getbasetemp() / "sim-policy")


def test_lerobot_finds_the_env_and_maps_its_keys_to_the_policy_features(sim) -> None:
    from lerobot.envs.configs import EnvConfig
    from lerobot.envs.utils import env_to_policy_features

    from lerobot_env_sigma import ENV_TYPE, SigmaSo101Env

    assert EnvConfig.get_choice_class(ENV_TYPE) is SigmaSo101Env
    cfg = SigmaSo101Env(scene=str(sim.shards))
    features = env_to_policy_features(cfg)
    # exactly the export's inputs (config.json) plus the action
    exported = json.loads((sim.export / "config.json").read_text())
    assert {k: list(v.shape) for k, v in features.items() if k != "action"} == {
        k: v["shape"] for k, v in exported["input_features"].items()
    }
    assert tuple(features["action"].shape) == (6,)
    assert cfg.fps == 30 and cfg.gym_kwargs["scene"]["image_size"] == 32


def test_the_scene_comes_from_shards_or_the_recorded_dataset_with_overrides(sim) -> None:
    from lerobot_env_sigma import SigmaSo101Env

    recorded = json.loads((sim.dataset / "meta" / "sigma_sim.json").read_text())["config"]
    from_shards = SigmaSo101Env(scene=str(sim.shards)).scene_settings()
    from_dataset = SigmaSo101Env(scene=str(sim.dataset)).scene_settings()
    assert from_shards == from_dataset
    assert from_shards["cube_colors"] == recorded["cube_colors"]
    assert from_shards["spawn_max_radius"] == recorded["spawn_max_radius"]
    assert SigmaSo101Env(scene=str(sim.shards), distractors=2).scene_settings()["distractors"] == 2
    assert SigmaSo101Env(image_size=48).features["pixels/wrist"].shape == (48, 48, 3)
    with pytest.raises(ValueError, match="distractors"):
        SigmaSo101Env(distractors=9)
    with pytest.raises(ValueError, match=r"--env\.scene"):
        SigmaSo101Env(scene=str(sim.root / "nothing-here"))
    assert SigmaSo101Env(instruction_steps=3).gym_kwargs["instruction_steps"] == 3
    with pytest.raises(ValueError, match=r"--env\.instruction_steps must be >= 0"):
        SigmaSo101Env(instruction_steps=-1)


def test_lerobots_rollout_loop_runs_the_closed_loops_episodes_step_by_step(sim) -> None:
    """LeRobot's own eval_policy on the env, with the export loaded by LeRobot, sees the
    states and sends the actions that sigma_sim.rollout's loop does for the same seeds."""
    from lerobot.envs.factory import make_env
    from lerobot.policies.factory import get_policy_class, make_pre_post_processors
    from lerobot.processor import PolicyProcessorPipeline
    from lerobot.scripts.lerobot_eval import eval_policy

    from lerobot_env_sigma import SigmaSo101Env
    from sigma_core import SigmaPolicy
    from sigma_core.data import Normalizer
    from sigma_sim.rollout import rollout

    episodes, seed = 2, 10_000
    cfg = SigmaSo101Env(scene=str(sim.shards), max_seconds=1.0)
    vec = make_env(cfg, n_envs=1, use_async_envs=False)[cfg.type][0]
    policy = get_policy_class("sigma").from_pretrained(str(sim.export)).eval()
    pre, post = make_pre_post_processors(policy.config, pretrained_path=str(sim.export))
    identity = PolicyProcessorPipeline(steps=[])
    with torch.no_grad():
        info = eval_policy(
            vec, policy, identity, identity, pre, post, n_episodes=episodes,
            return_episode_data=True, start_seed=seed,
        )  # fmt: skip
    vec.close()
    data = info["episodes"]

    class Recording:
        """sigma_sim's closed loop, keeping the state each step saw and the action it chose."""

        def __init__(self, policy: Any) -> None:
            self.policy, self.states, self.actions = policy, [], []

        def __getattr__(self, name: str) -> Any:
            return getattr(self.policy, name)

        def step(self, batch: Any) -> torch.Tensor:
            action = self.policy.step(batch)
            self.states.append(batch.state[0].clone())
            self.actions.append(action[0].clone())
            return action

    reference = Recording(SigmaPolicy.from_pretrained(sim.run / "policy").eval())
    results = rollout(reference, sim.meta, episodes, seed=seed, max_seconds=1.0)
    steps = [r.steps for r in results]
    assert steps == [30, 30]
    state_norm = Normalizer(sim.meta["stats"]["observation.state"])
    action_norm = Normalizer(sim.meta["stats"]["action"])
    ours_states = state_norm.denormalize(torch.stack(reference.states)).numpy()
    ours_actions = action_norm.denormalize(torch.stack(reference.actions)).numpy()
    start = 0
    for i, n in enumerate(steps):
        rows = (data["episode_index"] == i).nonzero().flatten()
        theirs_states = data["observation.state"][rows[:n]].numpy()
        theirs_actions = data["action"][rows[:n]].numpy()
        np.testing.assert_allclose(theirs_states, ours_states[start : start + n], atol=1e-3)
        np.testing.assert_allclose(theirs_actions, ours_actions[start : start + n], atol=1e-3)
        start += n
    # the policy moved the arm: the comparison is not of two idle runs
    assert np.ptp(ours_states[:, :5], axis=0).max() > 0.5
    assert [e["success"] for e in info["per_episode"]] == [r.success for r in results]
    assert [e["seed"] for e in info["per_episode"]] == [r.seed for r in results]


def test_lerobot_eval_on_the_env_equals_sigma_eval_sim_per_seed(sim, tmp_path) -> None:
    """Both command lines, out of process, on the same 3 seeds: the same successes."""
    env = subprocess_env()
    sigma_cmd = [
        sys.executable, "-m", "sigma_cli", "eval", str(sim.run), "--data", str(sim.shards),
        "--out", str(tmp_path / "sigma"), "--split", "val", "--sim", "3", "--seed", "0",
        "--max-seconds", "1", "--no-plots",
    ]  # fmt: skip
    lerobot_cmd = [
        sys.executable, "-m", "lerobot.scripts.lerobot_eval", f"--policy.path={sim.export}",
        "--env.type=sigma_so101", f"--env.scene={sim.shards}", "--env.max_seconds=1",
        "--eval.n_episodes=3", "--eval.batch_size=1", "--seed=10000", "--policy.device=cpu",
        f"--output_dir={tmp_path / 'lerobot'}",
    ]  # fmt: skip
    # both at once: most of each run is importing torch, LeRobot and MuJoCo
    running = [
        subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for cmd in (sigma_cmd, lerobot_cmd)
    ]
    for proc in running:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, f"{proc.args[2:4]}: " + out[-2000:] + err[-3000:]
    report = json.loads((tmp_path / "sigma" / "report.json").read_text())
    detail = report["closed_loop"]["run"]["episodes_detail"]
    assert [d["seed"] for d in detail] == [10_000, 10_001, 10_002]
    eval_info = json.loads((tmp_path / "lerobot" / "eval_info.json").read_text())
    (task,) = eval_info["per_task"]
    assert task["task_group"] == "sigma_so101"
    assert task["metrics"]["successes"] == [d["success"] for d in detail]
    assert eval_info["overall"]["n_episodes"] == 3
    videos = [Path(p) for p in task["metrics"]["video_paths"]]
    assert len(videos) == 3 and all(p.stat().st_size > 0 for p in videos)


@pytest.mark.slow
def test_lerobot_eval_runs_an_act_trained_by_lerobot_on_the_recording(sim, tmp_path) -> None:
    """The same harness for LeRobot's own policies: ACT (2 steps, from scratch, offline)."""
    env = subprocess_env()
    train = [
        sys.executable, "-m", "lerobot.scripts.lerobot_train", "--policy.type=act",
        "--policy.pretrained_backbone_weights=null", "--policy.chunk_size=8",
        "--policy.n_action_steps=8", "--dataset.repo_id=sigma/so101_pickplace_sim",
        f"--dataset.root={sim.dataset}", f"--output_dir={tmp_path / 'act'}", "--steps=2",
        "--batch_size=2", "--save_freq=2", "--num_workers=0", "--policy.push_to_hub=false",
        "--wandb.enable=false", "--policy.device=cpu",
    ]  # fmt: skip
    trained = subprocess.run(train, capture_output=True, text=True, env=env, timeout=900)
    assert trained.returncode == 0, trained.stderr[-3000:]
    checkpoint = tmp_path / "act" / "checkpoints" / "000002" / "pretrained_model"
    # ACT reads every input the recording has, the privileged scene state included
    evaluate = [
        sys.executable, "-m", "lerobot.scripts.lerobot_eval", f"--policy.path={checkpoint}",
        "--env.type=sigma_so101", f"--env.scene={sim.dataset}", "--env.environment_state=true",
        "--env.max_seconds=1", "--eval.n_episodes=2", "--eval.batch_size=1", "--seed=10000",
        "--policy.device=cpu", f"--output_dir={tmp_path / 'eval'}",
    ]  # fmt: skip
    evaluated = subprocess.run(evaluate, capture_output=True, text=True, env=env, timeout=900)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    eval_info = json.loads((tmp_path / "eval" / "eval_info.json").read_text())
    assert eval_info["overall"]["n_episodes"] == 2
    assert len(eval_info["per_task"][0]["metrics"]["successes"]) == 2
