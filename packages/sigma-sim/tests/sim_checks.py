"""Checks more than one sigma-sim test module makes (imported by name, as cli_fixtures is)."""

from __future__ import annotations

from typing import Any


def assert_first_cube(meta: dict[str, Any], environment_state: Any) -> None:
    """``environment_state`` (1, S_env), normalized with ``meta``'s statistics, holds the
    named cube's position of the first evaluation episode (seed 10,000) at its reset."""
    import numpy as np

    from sigma_core.data import environment_normalizer
    from sigma_sim.rollout import eval_env_seed, scene_config
    from sigma_sim.scene import make_env, reset_episode

    cfg = scene_config(meta, distractors=None, image_size=32, fps=30)
    env = make_env(cfg)
    try:
        _, _, episode = reset_episode(env, eval_env_seed(10_000, 0), list(cfg.cube_colors))
    finally:
        env.close()
    width = environment_state.shape[-1]
    raw = environment_normalizer(meta, "meta", width).denormalize(environment_state[0])
    np.testing.assert_allclose(raw[:3].numpy(), episode.cube_pos, atol=1e-5)
