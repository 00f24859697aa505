"""``SigmaSo101Env``: LeRobot's ``EnvConfig`` for the so101-pickplace scene."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Any

import gymnasium as gym
from lerobot.configs import FeatureType, PolicyFeature
from lerobot.envs.configs import EnvConfig
from lerobot.utils.constants import ACTION, OBS_ENV_STATE, OBS_IMAGES, OBS_STATE

#: ``--env.type`` of this environment.
ENV_TYPE = "sigma_so101"
#: The simulator's cameras (``pixels/<camera>`` -> ``observation.images.<camera>``),
#: named as in the datasets the scene records (sigma_sim.gym_env.CAMERAS).
CAMERAS = ("overhead", "wrist")
#: SO-101 joints: shoulder_pan, shoulder_lift, elbow_flex, wrist_flex, wrist_roll, gripper.
JOINTS = 6


@EnvConfig.register_subclass(ENV_TYPE)
@dataclass
class SigmaSo101Env(EnvConfig):
    """The SO-101 pick-and-place scene that ``sigma eval --sim`` evaluates in, for LeRobot.

    Episode ``s`` of ``lerobot-eval --seed=S`` (``s = S + i``) is the simulator episode
    that ``sigma eval --sim`` runs for seed ``s``: ``lerobot-eval --seed=10000`` is
    ``sigma eval --sim --seed 0`` (see :mod:`sigma_sim.gym_env`).

    Attributes:
        scene: a shard directory (``meta.json``) or a LeRobot dataset recorded by
            ``so101-pickplace``: evaluate in the scene it was recorded in (cube and
            disc colours, spawn region, distractors, fps, image size), as
            ``sigma eval --sim`` does with a policy's shards. Empty: the default
            scene (every colour, no distractors).
        distractors: cubes of other colours on the table (0-4); default: the
            scene's (0 without one).
        image_size: square camera images, pixels; default: the scene's stored
            size (96 without one).
        max_seconds: simulated seconds before an episode is cut off (failed).
        environment_state: also observe the privileged scene state
            (``observation.environment_state``, for oracle policies).
        seed_policy_noise: a seeded reset seeds torch's generator with the episode's
            reset seed, as ``sigma eval --sim`` does, so a policy that samples noise
            reproduces it episode by episode (with ``--eval.batch_size=1``).
        instruction_steps: show the instruction on the first ``k`` control steps
            only, then the empty text (the instruction-once test of the memory, as
            ``sigma eval --sim --instruction-steps``); default: always.
        fps: the control rate; with ``scene``, the recording's.
    """

    task: str | None = "so101-pickplace"
    fps: int = 30
    scene: str | None = None
    distractors: int | None = None
    image_size: int | None = None
    max_seconds: float = 15.0
    environment_state: bool = False
    seed_policy_noise: bool = True
    instruction_steps: int | None = None
    features: dict[str, PolicyFeature] = field(default_factory=dict)
    features_map: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        settings = self.scene_settings()
        self.fps = int(settings["fps"])
        size = int(settings["image_size"])
        self.features = {
            ACTION: PolicyFeature(type=FeatureType.ACTION, shape=(JOINTS,)),
            "agent_pos": PolicyFeature(type=FeatureType.STATE, shape=(JOINTS,)),
        }
        self.features_map = {ACTION: ACTION, "agent_pos": OBS_STATE}
        for cam in CAMERAS:
            self.features[f"pixels/{cam}"] = PolicyFeature(
                type=FeatureType.VISUAL, shape=(size, size, 3)
            )
            self.features_map[f"pixels/{cam}"] = f"{OBS_IMAGES}.{cam}"
        if self.environment_state:
            from sigma_sim.scene import environment_state_names

            n = len(environment_state_names(list(settings["cube_colors"])))
            self.features["environment_state"] = PolicyFeature(type=FeatureType.ENV, shape=(n,))
            self.features_map["environment_state"] = OBS_ENV_STATE

    def scene_settings(self) -> dict[str, Any]:
        """The scene's ``So101PickPlaceConfig`` fields (JSON), from ``scene`` and the overrides.

        Raises:
            ValueError: a bad ``scene`` path or settings the simulator refuses (the
                message names the field).
        """
        from sigma_core import SigmaUserError
        from sigma_sim.config import So101PickPlaceConfig
        from sigma_sim.gym_env import recorded_scene

        if self.max_seconds <= 0:
            raise ValueError(f"--env.max_seconds must be > 0, got {self.max_seconds}")
        if self.instruction_steps is not None and self.instruction_steps < 0:
            raise ValueError(f"--env.instruction_steps must be >= 0, got {self.instruction_steps}")
        try:
            if self.scene:
                cfg = recorded_scene(
                    self.scene, distractors=self.distractors, image_size=self.image_size
                )
            else:
                cfg = So101PickPlaceConfig(
                    image_size=self.image_size or 96,
                    fps=self.fps,
                    distractors=self.distractors or 0,
                )
        except SigmaUserError as exc:
            raise ValueError(f"--env.scene: {exc}") from None
        except ValueError as exc:  # pydantic: the field and the bound it broke
            raise ValueError(f"--env.type={ENV_TYPE}: bad scene settings: {exc}") from None
        return cfg.model_dump(mode="json")

    @property
    def gym_kwargs(self) -> dict[str, Any]:
        return {
            "scene": self.scene_settings(),
            "max_seconds": self.max_seconds,
            "environment_state": self.environment_state,
            "seed_policy_noise": self.seed_policy_noise,
            "instruction_steps": self.instruction_steps,
        }

    def create_envs(
        self, n_envs: int, use_async_envs: bool = False
    ) -> dict[str, dict[int, gym.vector.VectorEnv]]:
        """``{"sigma_so101": {0: VectorEnv}}`` of ``n_envs`` scenes (async: forkserver workers)."""
        from gymnasium.vector import AutoresetMode

        from sigma_sim.gym_env import make_gym_env

        make = partial(make_gym_env, **self.gym_kwargs)
        if use_async_envs and n_envs > 1:
            # a worker forked from a process that rendered hangs: start from a clean server
            vec: gym.vector.VectorEnv = gym.vector.AsyncVectorEnv(
                [make] * n_envs, autoreset_mode=AutoresetMode.SAME_STEP, context="forkserver"
            )
        else:
            vec = gym.vector.SyncVectorEnv([make] * n_envs, autoreset_mode=AutoresetMode.SAME_STEP)
        return {self.type: {0: vec}}
