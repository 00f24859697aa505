"""The so101-pickplace scene as a gymnasium environment, in LeRobot's observation conventions.

:class:`So101PickPlaceGymEnv` is the closed loop of :mod:`sigma_sim.rollout` turned
inside out: the same scene (:func:`sigma_sim.scene.make_env`), the same episode per
seed (:func:`sigma_sim.scene.reset_episode` with reset seed
:func:`sigma_sim.rollout.eval_env_seed`), the same unit conversions and clipping, and
the same success rule, with the policy outside. One ``step`` is one control step
(``1 / fps`` simulated seconds).

Observation (LeRobot's gym conventions, as ``lerobot.envs.utils.preprocess_observation``
reads them)::

    pixels/overhead, pixels/wrist   uint8 (image_size, image_size, 3), every step
    agent_pos                       float32[6], dataset units (joints in degrees,
                                    gripper 0-100), what recordings store as
                                    observation.state
    environment_state               float32[8 + 4 * colours] (only with
                                    ``environment_state=True``): the privileged scene
                                    state recordings store (sigma_sim.scene.environment_state)

Action: float32[6] joint targets in dataset units (what a policy trained on a recorded
dataset outputs), converted with ``so101_nexus.dataset_row_to_sim_qpos`` and clipped to
the simulator's joint range, exactly as :func:`sigma_sim.rollout.rollout` does.

``reset(seed=s)`` builds evaluation episode ``s``: reset seed ``2**32 + s``, so seed
``s`` here is episode ``s - 10_000 - k`` of ``sigma eval --sim --seed k`` (whose
episode ``i`` uses ``10_000 + k + i``). ``reset()`` without a seed draws one from the
env's generator. With ``seed_policy_noise`` (default), a seeded reset also seeds
torch's global generator with the reset seed, as the closed loop does before each
episode, so a policy that samples noise (the flow trajectory branch) draws the same
noise as under ``sigma eval --sim`` when episodes run one at a time.

With ``instruction_steps=k`` the task text (``task`` / ``task_description``, what
LeRobot's ``add_envs_task`` reads at every step) is the instruction for the
observations of the first ``k`` control steps and ``""`` from step ``k`` on, as in
the closed loop's instruction-once variant (:mod:`sigma_sim.rollout`);
``episode.task`` keeps the instruction.

The episode terminates at the first step whose ``info["success"]`` is true (the cube
rests on the goal disc, released): ``info["is_success"]`` (LeRobot's key) is that flag.
Truncation after ``floor(max_seconds * fps)`` steps is the caller's
(``gymnasium.wrappers.TimeLimit``; see :func:`make_gym_env`). The reward is the
simulator's own shaped reward. ``info`` also carries the progress measures of
:mod:`sigma_sim.rollout` (``tcp_to_obj_dist``, ``obj_to_target_dist``, ``is_grasped``,
``lift_height``) and ``wrong_object`` (a distractor cube was disturbed so far).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np

from sigma_sim.render import ensure_gl_backend

if TYPE_CHECKING:
    from sigma_sim.config import So101PickPlaceConfig
    from sigma_sim.scene import Episode

ensure_gl_backend()  # before anything imports mujoco

#: Gym observation key of each simulator camera (LeRobot: ``observation.images.<key>``),
#: the recorded datasets' camera names (:data:`sigma_sim.record.CAMERAS`).
CAMERAS = {"overhead": "overhead_camera", "wrist": "wrist_camera"}
#: Simulator ``info`` entries passed on in the step's info (floats).
INFO_KEYS = ("tcp_to_obj_dist", "obj_to_target_dist", "is_grasped", "lift_height")


def episode_steps(max_seconds: float, fps: int) -> int:
    """Steps of an episode: ``floor(max_seconds * fps)``, at least 1 (as the closed loop)."""
    return max(1, math.floor(max_seconds * fps + 1e-9))


class So101PickPlaceGymEnv(gym.Env):
    """The so101-pickplace scene with LeRobot's observation keys (see the module docstring).

    Args:
        cfg: the scene (colours, spawn region, distractors, image size, fps); e.g.
            :func:`sigma_sim.rollout.scene_config` of a shard directory's meta.json.
        environment_state: add the privileged ``environment_state`` observation.
        seed_policy_noise: a seeded reset also seeds torch's global generator with
            the reset seed (the closed loop's per-episode noise seed).
        instruction_steps: the task text is shown on the first ``k`` control steps'
            observations only, then ``""`` (``None``: always).
        render_mode: ``"rgb_array"`` (``render()`` returns the overhead frame) or ``None``.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(
        self,
        cfg: So101PickPlaceConfig,
        *,
        environment_state: bool = False,
        seed_policy_noise: bool = True,
        instruction_steps: int | None = None,
        render_mode: str | None = "rgb_array",
    ) -> None:
        from gymnasium import spaces

        from sigma_sim.rollout import check_instruction_steps, sim_to_dataset
        from sigma_sim.scene import environment_state_names, make_env

        self.cfg = cfg
        self.colors = list(cfg.cube_colors)
        self.with_environment_state = environment_state
        self.seed_policy_noise = seed_policy_noise
        check_instruction_steps(instruction_steps)
        self.instruction_steps = instruction_steps
        self._steps = 0
        self.render_mode = render_mode
        self.metadata = {**self.metadata, "render_fps": cfg.fps}
        self.sim = make_env(cfg)
        low = self.sim.action_space.low.astype(np.float64)
        high = self.sim.action_space.high.astype(np.float64)
        self.bounds = (low, high)
        self.gripper = (float(low[-1]), float(high[-1]))
        # the joint range in dataset units (the conversion is increasing in every entry)
        self.action_space = spaces.Box(
            sim_to_dataset(low, self.gripper), sim_to_dataset(high, self.gripper), dtype=np.float32
        )
        size = (cfg.image_size, cfg.image_size, 3)
        obs: dict[str, spaces.Space] = {
            "pixels": spaces.Dict(
                {name: spaces.Box(0, 255, size, dtype=np.uint8) for name in CAMERAS}
            ),
            "agent_pos": spaces.Box(-np.inf, np.inf, (len(low),), dtype=np.float32),
        }
        if environment_state:
            n = len(environment_state_names(self.colors))
            obs["environment_state"] = spaces.Box(-np.inf, np.inf, (n,), dtype=np.float32)
        self.observation_space = spaces.Dict(obs)
        self.task = self.task_description = ""
        self.episode_seed: int | None = None
        #: what the last reset drew (task, cube and goal poses): for scripted experts
        self.episode: Episode | None = None
        self._last: dict[str, np.ndarray] | None = None
        self._distractors: Any = None
        self._wrong = False

    def _observation(self, obs: dict[str, np.ndarray]) -> dict[str, Any]:
        from sigma_sim.rollout import sim_to_dataset
        from sigma_sim.scene import environment_state

        self._last = obs
        out: dict[str, Any] = {
            "pixels": {name: np.array(obs[key], copy=True) for name, key in CAMERAS.items()},
            "agent_pos": sim_to_dataset(obs["state"], self.gripper),
        }
        if self.with_environment_state:
            out["environment_state"] = environment_state(self.sim, self.colors)
        return out

    def _info(self, info: dict[str, Any], success: bool) -> dict[str, Any]:
        out: dict[str, Any] = {k: float(info[k]) for k in INFO_KEYS}
        out["is_success"] = success
        out["wrong_object"] = self._wrong
        return out

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Start evaluation episode ``seed`` (reset seed ``2**32 + seed``; module docstring).

        Raises:
            sigma_core.SigmaUserError: a negative seed.
        """
        from sigma_sim.rollout import Distractors, eval_env_seed
        from sigma_sim.scene import reset_episode

        super().reset(seed=seed)
        episode = int(self.np_random.integers(2**31)) if seed is None else int(seed)
        env_seed = eval_env_seed(episode, 0)
        if seed is not None and self.seed_policy_noise:
            import torch

            torch.manual_seed(env_seed)
        obs, info, drawn = reset_episode(self.sim, env_seed, self.colors)
        self.episode_seed, self.episode = episode, drawn
        self._steps = 0
        self._show_task()
        self._distractors = Distractors(self.sim, self.colors)
        self._wrong = False
        return self._observation(obs), self._info(info, False)

    def step(self, action: np.ndarray) -> tuple[dict[str, Any], float, bool, bool, dict[str, Any]]:
        """One control step with joint targets in dataset units; terminates on success."""
        from sigma_sim.rollout import dataset_to_sim

        if self._distractors is None:
            raise RuntimeError("call reset() before step()")
        row = np.asarray(action, dtype=np.float32).reshape(-1)
        target = np.clip(dataset_to_sim(row, self.gripper), *self.bounds)
        obs, reward, _, _, info = self.sim.step(target)
        self._steps += 1
        self._show_task()
        self._wrong = self._wrong or self._distractors.disturbed()
        success = bool(info["success"])
        return self._observation(obs), float(reward), success, False, self._info(info, success)

    def _show_task(self) -> None:
        """The task text of the coming observation: the instruction, or ``""`` after k steps."""
        from sigma_sim.rollout import shown_task

        task = "" if self.episode is None else self.episode.task
        self.task = self.task_description = shown_task(task, self._steps, self.instruction_steps)

    def render(self) -> np.ndarray | None:
        """The last overhead camera frame (``render_mode="rgb_array"``), else ``None``."""
        if self.render_mode != "rgb_array" or self._last is None:
            return None
        return np.array(self._last[CAMERAS["overhead"]], copy=True)

    def close(self) -> None:
        self.sim.close()


def make_gym_env(
    scene: dict[str, Any],
    max_seconds: float = 15.0,
    environment_state: bool = False,
    seed_policy_noise: bool = True,
    instruction_steps: int | None = None,
) -> gym.Env:
    """:class:`So101PickPlaceGymEnv` of ``So101PickPlaceConfig(**scene)`` under a
    ``TimeLimit`` of :func:`episode_steps` (picklable arguments: vector env workers)."""
    from gymnasium.wrappers import TimeLimit

    from sigma_sim.config import So101PickPlaceConfig

    cfg = So101PickPlaceConfig(**scene)
    env = So101PickPlaceGymEnv(
        cfg,
        environment_state=environment_state,
        seed_policy_noise=seed_policy_noise,
        instruction_steps=instruction_steps,
    )
    return TimeLimit(env, max_episode_steps=episode_steps(max_seconds, cfg.fps))


class SceneResets(gym.Wrapper):
    """The raw so101_nexus env of the scene, with :func:`sigma_sim.scene.reset_episode`'s resets.

    For robot adapters that drive the simulator's own observations and joint-radian
    actions (``so101_nexus.lerobot_adapter``'s ``sim_so_follower``): ``reset(seed=s)``
    is evaluation episode ``s`` (reset seed ``2**32 + s``, no distractor sharing the
    named cube's colour), as in :class:`So101PickPlaceGymEnv`; a reset with options
    (e.g. the adapter's ``init_qpos``) or no seed is passed to the simulator as is.
    """

    def __init__(self, env: gym.Env, colors: list[str]) -> None:
        super().__init__(env)
        self.colors = colors

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        from sigma_sim.rollout import eval_env_seed
        from sigma_sim.scene import reset_episode

        if seed is None or options:
            return self.env.reset(seed=seed, options=options)
        obs, info, _ = reset_episode(self.env.unwrapped, eval_env_seed(int(seed), 0), self.colors)
        return obs, info


def make_follower_env(
    render_mode: str | None = None,
    control_mode: str = "pd_joint_pos",
    scene: str | None = None,
    **settings: Any,
) -> gym.Env:
    """The scene for a simulated robot adapter (``gymnasium.make`` entry point).

    Args:
        render_mode: accepted for the adapter's ``gym.make`` call; the cameras are
            the scene's (``overhead_camera``, ``wrist_camera``), not ``render()``.
        control_mode: must be ``pd_joint_pos`` (absolute joint targets, as recorded).
        scene: a shard directory or recorded dataset (:func:`recorded_scene`).
        settings: ``So101PickPlaceConfig`` fields (``image_size``, ``cube_colors``,
            ``target_colors``, ``distractors``, ...), over the scene's.

    Raises:
        ValueError: another control mode, or settings the scene refuses.
    """
    from sigma_sim.config import So101PickPlaceConfig
    from sigma_sim.scene import make_env

    if control_mode != "pd_joint_pos":
        raise ValueError(f"the Sigma scene runs control_mode pd_joint_pos, not {control_mode!r}")
    base: dict[str, Any] = {}
    if scene:
        base = recorded_scene(
            scene, image_size=settings.get("image_size"), fps=settings.get("fps")
        ).model_dump(mode="json")
    cfg = So101PickPlaceConfig(**{**base, **settings})
    return SceneResets(make_env(cfg), list(cfg.cube_colors))


def recorded_scene(
    path: str | Path,
    *,
    distractors: int | None = None,
    image_size: int | None = None,
    fps: int | None = None,
) -> So101PickPlaceConfig:
    """The scene a dataset was recorded in: ``path`` is a shard directory (its
    ``meta.json``) or a LeRobot dataset recorded by ``so101-pickplace`` (its
    ``meta/sigma_sim.json`` and ``meta/info.json``).

    As :func:`sigma_sim.rollout.scene_config` (which ``sigma eval --sim`` uses):
    colours, spawn region and distractors as recorded; ``image_size`` defaults to
    the shards' stored size (a dataset's recorded size), ``fps`` to the source's
    (default 30); ``distractors``, when given, overrides the recording's.

    Raises:
        sigma_core.SigmaUserError: a path that is neither, or unreadable metadata.
    """
    import json

    from sigma_core import SigmaUserError
    from sigma_lerobot.dataset import recording
    from sigma_sim.rollout import DEFAULT_FPS, scene_config

    root = Path(path)
    try:
        if (root / "meta.json").is_file():
            meta = json.loads((root / "meta.json").read_text())
            size = int(meta.get("options", {}).get("image_size") or 0) or None
        elif (root / "meta" / "info.json").is_file():
            info = json.loads((root / "meta" / "info.json").read_text())
            found = recording(root)
            meta = {"source": {"recording": found, "fps": info.get("fps")}}
            size = int((found or {}).get("config", {}).get("image_size") or 0) or None
        else:
            raise SigmaUserError(
                f"scene {root}: neither shards (meta.json) nor a LeRobot dataset (meta/info.json)"
            )
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        raise SigmaUserError(f"scene {root}: unreadable metadata ({exc})") from None
    rate = fps or round(float(meta.get("source", {}).get("fps") or DEFAULT_FPS))
    return scene_config(
        meta, distractors=distractors, image_size=image_size or size or 96, fps=rate
    )


__all__ = [
    "CAMERAS",
    "SceneResets",
    "So101PickPlaceGymEnv",
    "episode_steps",
    "make_follower_env",
    "make_gym_env",
    "recorded_scene",
]
