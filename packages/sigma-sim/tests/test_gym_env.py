"""The scene as a gymnasium env (:mod:`sigma_sim.gym_env`): episodes, units, success."""

from __future__ import annotations

import numpy as np
import pytest

from sigma_sim.config import So101PickPlaceConfig


@pytest.fixture(scope="module")
def env():
    from sigma_sim.gym_env import make_gym_env

    env = make_gym_env({"image_size": 32}, max_seconds=12.0)
    yield env
    env.close()


def test_reset_is_the_closed_loops_episode_in_lerobots_keys(env) -> None:
    from sigma_sim.rollout import sim_to_dataset
    from sigma_sim.scene import make_env, reset_episode

    obs, info = env.reset(seed=7)
    assert set(obs) == {"pixels", "agent_pos"} and set(obs["pixels"]) == {"overhead", "wrist"}
    assert obs["pixels"]["wrist"].shape == (32, 32, 3) and obs["pixels"]["wrist"].dtype == np.uint8
    assert env.observation_space.contains(obs)
    assert info["is_success"] is False and env.unwrapped.episode_seed == 7
    reference = make_env(So101PickPlaceConfig(image_size=32))
    try:
        ref_obs, _, episode = reset_episode(
            reference, 2**32 + 7, list(reference.config.cube_colors)
        )
        gripper = env.unwrapped.gripper
        np.testing.assert_array_equal(obs["agent_pos"], sim_to_dataset(ref_obs["state"], gripper))
        np.testing.assert_array_equal(obs["pixels"]["overhead"], ref_obs["overhead_camera"])
        assert env.unwrapped.task_description == episode.task
    finally:
        reference.close()
    assert env.get_wrapper_attr("_max_episode_steps") == 12 * 30


def test_the_scripted_expert_succeeds_through_the_env_and_success_terminates(env) -> None:
    """Dataset-unit actions (the expert's joint targets converted) reach the success flag."""
    from sigma_sim.expert import PickPlaceExpert, Style
    from sigma_sim.rollout import dataset_to_sim, sim_to_dataset

    inner = env.unwrapped
    low, high = inner.bounds
    expert = PickPlaceExpert(inner.sim.model, inner.cfg.fps, low, high)
    outcomes = []
    for seed in (3, 4):
        obs, _ = env.reset(seed=seed)
        q = dataset_to_sim(obs["agent_pos"], inner.gripper)
        plan = expert.plan(inner.episode, q, Style.sample(np.random.default_rng(seed)))
        for t in range(env.get_wrapper_attr("_max_episode_steps")):
            target = np.clip(plan.actions[min(t, len(plan.actions) - 1)], low, high)
            obs, reward, terminated, truncated, info = env.step(
                sim_to_dataset(target, inner.gripper)
            )
            if terminated or truncated:
                break
        outcomes.append((terminated, truncated, info["is_success"], t + 1 < 12 * 30))
        assert info["tcp_to_obj_dist"] < 0.2 and isinstance(reward, float)
    assert outcomes == [(True, False, True, True)] * 2


def test_holding_still_fails_at_the_time_limit() -> None:
    from sigma_sim.gym_env import make_gym_env

    env = make_gym_env({"image_size": 16}, max_seconds=0.5)
    try:
        obs, _ = env.reset(seed=0)
        steps = 0
        while True:
            obs, _, terminated, truncated, info = env.step(obs["agent_pos"])
            steps += 1
            if terminated or truncated:
                break
        assert (steps, terminated, truncated, info["is_success"]) == (15, False, True, False)
        assert info["wrong_object"] is False
    finally:
        env.close()


def test_the_follower_scene_resets_to_the_same_episode(env) -> None:
    from sigma_sim.gym_env import make_follower_env

    follower = make_follower_env(image_size=32)
    try:
        obs, _ = follower.reset(seed=7)
        ours, _ = env.reset(seed=7)
        np.testing.assert_array_equal(obs["overhead_camera"], ours["pixels"]["overhead"])
        with pytest.raises(ValueError, match="pd_joint_pos"):
            make_follower_env(control_mode="pd_joint_delta_pos")
    finally:
        follower.close()


def test_the_instruction_once_env_hides_the_task_after_k_steps() -> None:
    from sigma_core import SigmaUserError
    from sigma_sim.gym_env import make_gym_env

    env = make_gym_env({"image_size": 32}, max_seconds=1.0, instruction_steps=2)
    try:
        obs, _ = env.reset(seed=3)
        instruction = env.unwrapped.episode.task
        assert instruction and env.unwrapped.task_description == instruction
        texts = []
        for _ in range(3):  # the texts of the observations of steps 1, 2, 3
            env.step(obs["agent_pos"])
            texts.append(env.unwrapped.task_description)
        assert texts == [instruction, "", ""] and env.unwrapped.task == ""
        assert env.unwrapped.episode.task == instruction
        env.reset(seed=4)  # a new episode shows its instruction again
        assert env.unwrapped.task == env.unwrapped.episode.task != ""
    finally:
        env.close()
    with pytest.raises(SigmaUserError, match="instruction_steps must be >= 0"):
        make_gym_env({"image_size": 32}, instruction_steps=-1)
