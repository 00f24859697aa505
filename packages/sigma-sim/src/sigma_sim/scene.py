"""The simulated scene: a ``so101_nexus`` pick-and-place environment and its episodes.

:func:`make_env` builds ``PickAndPlaceEnv`` with

* two cameras (overhead and wrist) at ``image_size``, MSAA and shadows off, the
  low-poly visual meshes of :mod:`sigma_sim.render` (physics unchanged);
* the control period set to ``1 / fps`` through ``so101_nexus.PhysicsConfig``
  (timestep ``1 / (fps * k)`` with the smallest ``k`` that keeps it at or under
  the native 5 ms; integrator, solver and NoSlip as in the native preset), so one
  ``env.step`` is one dataset frame and nothing is resampled;
* one carried cube per colour of ``cube_colors`` (the env picks one per episode)
  and, with distractors, a distractor pool of the same colours, placed clear of the
  goal disc and the cube (``clear_distractors``, :func:`clear_position`).

:func:`reset_episode` resets under an episode seed; when a distractor drew the
carried cube's colour it resets again with the same seed and
``options={"target_index": ...}`` pinning another colour (the env consumes the
same random draws either way, so the layout stays the same), which keeps every
instruction unambiguous.


:func:`environment_state` reads the privileged scene state that recordings store
as LeRobot's ``observation.environment_state`` (layout in its docstring).

:class:`CameraSwitch` turns the env's camera rendering off and on between steps
without touching physics, so a closed loop renders only the frames a policy reads.
"""

from __future__ import annotations

import functools
import math
import os
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sigma_core import SigmaUserError
from sigma_sim.render import ensure_gl_backend, lowpoly_model_dir, using_model_dir

if TYPE_CHECKING:
    import numpy as np
    from so101_nexus.mujoco.pick_and_place import PickAndPlaceEnv

    from sigma_sim.config import So101PickPlaceConfig

#: Native physics step of the so101_nexus MuJoCo preset (``scene.MUJOCO_SCENE_OPTION_XML``).
NATIVE_TIMESTEP = 0.005
#: Processes (pids) that built an environment, i.e. created OpenGL renderers.
_RENDERING_PIDS: set[int] = set()

ensure_gl_backend()  # before anything imports mujoco


@dataclass(frozen=True)
class Episode:
    """What one reset drew: the task and the poses the expert needs (world frame)."""

    seed: int
    task: str
    cube_color: str
    target_color: str
    distractor_colors: tuple[str, ...]
    cube_pos: np.ndarray
    cube_quat: np.ndarray
    cube_half_size: float
    goal_pos: np.ndarray


def physics_for_fps(fps: int) -> tuple[float, int]:
    """(timestep, substeps): ``substeps * timestep == 1 / fps`` with timestep <= 5 ms."""
    substeps = max(1, math.ceil(1.0 / (fps * NATIVE_TIMESTEP) - 1e-9))
    return 1.0 / (fps * substeps), substeps


#: How far :func:`clear_position` widens the spawn arc, per step: half angle (deg), radius (m).
WIDEN_DEG, WIDEN_RADIUS, WIDEN_STEPS, WIDEN_TRIES = 15.0, 0.02, 6, 200


def clear_position(
    rng: np.random.Generator,
    env_cfg: Any,
    radius: float,
    placed: list[tuple[float, float, float]],
    disc_xy: tuple[float, float],
) -> tuple[float, float]:
    """A distractor's (x, y) under so101_nexus' own clearances, enforced.

    so101_nexus samples every object in the spawn arc (radius ``[r_min, r_max]``, half
    angle ``a``) with ``min_object_target_separation + radius`` from the goal disc's
    centre and ``min_object_separation + r_i + r_j`` between objects, but after 100
    tries it keeps the last candidate, however close. With the quickstart's narrow arc
    (7-12 cm, 30 degrees) and a 5 cm disc, two distractors rarely fit (in 0.7% of 300
    resets both were 6.5 cm from the goal and 5 cm from the cube), so they spawned on
    the goal (in 72% of the evaluation's scenes one lay within 3 cm of its centre) and
    into the named cube. Here the same clearances hold always: ``WIDEN_TRIES`` uniform
    draws in the arc; where none fits, the arc widens by ``WIDEN_DEG`` and
    ``WIDEN_RADIUS`` a step, at most ``WIDEN_STEPS`` times (from the same ``rng``: a
    seed still fixes the scene).

    Raises:
        RuntimeError: no clear position even in the widest arc.
    """
    import numpy as np

    cx, cy = env_cfg.spawn_center
    disc_sep = env_cfg.min_object_target_separation + radius
    for step in range(WIDEN_STEPS + 1):
        half = np.radians(min(env_cfg.spawn_angle_half_range_deg + WIDEN_DEG * step, 180.0))
        r_max = env_cfg.spawn_max_radius + WIDEN_RADIUS * step
        for _ in range(WIDEN_TRIES):
            r = rng.uniform(env_cfg.spawn_min_radius, r_max)
            theta = rng.uniform(-half, half)
            x, y = cx + r * np.cos(theta), cy + r * np.sin(theta)
            if np.hypot(x - disc_xy[0], y - disc_xy[1]) < disc_sep:
                continue
            if all(
                np.hypot(x - px, y - py) >= radius + pr + env_cfg.min_object_separation
                for px, py, pr in placed
            ):
                return float(x), float(y)
    raise RuntimeError("no clear position for a distractor: fewer distractors or a wider arc")


@functools.cache
def _clear_distractors_env() -> type:
    """``PickAndPlaceEnv`` whose distractors keep the clearances (:func:`clear_position`).

    The carried cube is placed by so101_nexus' own draws first, so for a seed the cube
    and the goal are where the overlapping layout put them; only distractors move. It
    overrides so101_nexus' private ``_sample_object_positions`` (the version is pinned
    in uv.lock; ``test_distractors_keep_clear_of_the_goal_and_the_cube`` fails if that
    hook changes).
    """
    from so101_nexus.mujoco.pick_and_place import PickAndPlaceEnv

    class ClearDistractorsEnv(PickAndPlaceEnv):
        def _sample_object_positions(
            self, rng: np.random.Generator, slots: list[Any], disc_xy: tuple[float, float]
        ) -> list[tuple[float, float]]:
            cube = super()._sample_object_positions(rng, slots[:1], disc_xy)[0]
            placed = [(*cube, slots[0].bounding_radius)]
            for slot in slots[1:]:
                xy = clear_position(rng, self.config, slot.bounding_radius, placed, disc_xy)
                placed.append((*xy, slot.bounding_radius))
            return [(x, y) for x, y, _ in placed]

    return ClearDistractorsEnv


def has_rendered() -> bool:
    """Whether this process has built an environment (and so started OpenGL renderers).

    A process forked after that hangs in its first render (llvmpipe's state does
    not survive ``fork``), so :mod:`sigma_sim.rollout` forks workers only before.
    """
    return os.getpid() in _RENDERING_PIDS


def make_env(cfg: So101PickPlaceConfig) -> PickAndPlaceEnv:
    """Build the recording environment for ``cfg`` (see the module docstring)."""
    ensure_gl_backend()
    _RENDERING_PIDS.add(os.getpid())
    from so101_nexus import (
        CubeObject,
        JointPositions,
        OverheadCamera,
        PhysicsConfig,
        PickAndPlaceConfig,
        RenderConfig,
        RenderingQuality,
        WristCamera,
    )
    from so101_nexus.mujoco.pick_and_place import PickAndPlaceEnv

    timestep, _ = physics_for_fps(cfg.fps)
    physics = PhysicsConfig(
        timestep_s=timestep,
        control_period_s=1.0 / cfg.fps,
        integrator="implicitfast",
        noslip_iterations=3,
        tolerance=1e-8,  # MuJoCo's default, which the native preset keeps
    )
    quality = RenderingQuality(msaa_samples=0, shadows=False)
    size = cfg.image_size
    extra: dict[str, Any] = {}
    if cfg.distractors:
        extra = {
            "distractors": [CubeObject(color=c) for c in cfg.cube_colors],
            "n_distractors": cfg.distractors,
        }
    with warnings.catch_warnings():
        # Overlapping carried/distractor/goal colours are intended: reset_episode
        # never lets a distractor share the carried cube's colour.
        warnings.filterwarnings("ignore", message=".*(overlap|share).*", category=UserWarning)
        env_cfg = PickAndPlaceConfig(
            cube_colors=list(cfg.cube_colors),
            target_colors=list(cfg.target_colors),
            spawn_min_radius=cfg.spawn_min_radius,
            spawn_max_radius=cfg.spawn_max_radius,
            spawn_angle_half_range_deg=cfg.spawn_angle_deg,
            obs_mode="visual",
            observations=[JointPositions(), OverheadCamera(size, size), WristCamera(size, size)],
            render=RenderConfig(width=size, height=size, quality=quality),
            physics=physics,
            terminate_on_success=False,
            **extra,
        )
    env_class = _clear_distractors_env() if cfg.distractors and cfg.clear_distractors else None
    with using_model_dir(lowpoly_model_dir(cfg.mesh_faces)):
        try:
            return (env_class or PickAndPlaceEnv)(env_cfg, control_mode="pd_joint_pos")
        except Exception as exc:
            if "OpenGL" not in str(exc) and "GL" not in type(exc).__name__:
                raise
            raise SigmaUserError(
                f"MuJoCo cannot render off-screen ({type(exc).__name__}: {exc}). Set "
                "MUJOCO_GL=egl (or osmesa) before Python first imports mujoco; now "
                f"MUJOCO_GL={os.environ.get('MUJOCO_GL')!r}"
            ) from exc


class _NoRenderer:
    """Stands in for a ``mujoco.Renderer`` while cameras are off: draws nothing, returns None."""

    def update_scene(self, *args: Any, **kwargs: Any) -> None:
        return None

    def enable_depth_rendering(self) -> None:
        return None

    def disable_depth_rendering(self) -> None:
        return None

    def render(self, *args: Any, **kwargs: Any) -> None:
        return None


class CameraSwitch:
    """Turns an env's camera observations off and on between steps; physics is untouched.

    ``so101_nexus`` (0.10) renders every camera whose renderer is set
    (``env._wrist_renderer``, ``env._overhead_obs_renderer``) in ``_get_obs`` on
    every reset and step. While the switch is off those two attributes hold a
    stand-in that draws nothing, so the observation keeps its keys with ``None``
    for each image, and nothing else changes: the MuJoCo state, the env's random
    generator (the wrist camera is still randomized at reset, as ``_wrist_renderer``
    is not ``None``) and the real renderers, which are put back when the switch is
    turned on. A frame rendered while on is therefore bit-identical to the one an
    env that renders every step produces at that step. Turn the switch on before
    ``env.close()`` (or use :meth:`close`) so the real renderers are released.
    """

    ATTRIBUTES = ("_wrist_renderer", "_overhead_obs_renderer")

    def __init__(self, env: PickAndPlaceEnv) -> None:
        missing = [a for a in self.ATTRIBUTES if not hasattr(env, a)]
        if missing:  # a so101_nexus release that renders differently
            raise RuntimeError(
                f"{type(env).__name__} has no {', '.join(missing)}: sigma_sim.scene.CameraSwitch "
                "does not know how this so101_nexus version renders"
            )
        self.env = env
        self.renderers = {a: getattr(env, a) for a in self.ATTRIBUTES}
        self.on = True

    def set(self, on: bool) -> None:
        """Render the cameras on the following resets and steps (``True``) or not."""
        if on == self.on:
            return
        for attr, renderer in self.renderers.items():
            if renderer is not None:
                setattr(self.env, attr, renderer if on else _NoRenderer())
        self.on = on

    def close(self) -> None:
        """Put the real renderers back and close the env."""
        self.set(True)
        self.env.close()


def _body(env: PickAndPlaceEnv, name: str) -> int:
    import mujoco

    body = mujoco.mj_name2id(env.model, mujoco.mjtObj.mjOBJ_BODY, name)
    if body < 0:
        raise RuntimeError(f"the so101_nexus scene has no body {name!r}")
    return int(body)


def on_table(env: PickAndPlaceEnv, name: str) -> bool:
    """Whether body ``name`` (a cube slot) is in the scene: unused slots are parked
    far below the table (z < -1 m)."""
    return bool(env.data.xpos[_body(env, name)][2] > -1.0)


def active_distractors(env: PickAndPlaceEnv, colors: list[str]) -> list[str]:
    """Colours of the distractor cubes on the table (inactive ones are parked below it)."""
    if not env.config.max_distractors:
        return []
    return [c for i, c in enumerate(colors) if on_table(env, f"distractor_slot_{i}")]


#: so101_nexus' bodies of the distractor cubes: ``distractor_slot_<i>``
DISTRACTOR_BODY = "distractor_slot_"


def hide_distractors(env: PickAndPlaceEnv) -> int:
    """Make every geom of ``env``'s distractor cube bodies transparent (alpha 0), in place;
    return how many geoms were hidden. Physics (collisions, masses) is untouched."""
    import mujoco

    model, hidden = env.model, 0
    for g in range(model.ngeom):
        body = mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_BODY, int(model.geom_bodyid[g]))
        if body and body.startswith(DISTRACTOR_BODY):
            model.geom_rgba[g, 3] = 0.0
            hidden += 1
    return hidden


def uncluttered_observation(env: PickAndPlaceEnv) -> dict[str, np.ndarray]:
    """The observation of this instant rendered without the distractor cubes (their geoms
    transparent for the render only; nothing moves): what the scene would look like had
    only the named cube been on the table. The privileged target of ``sigma declutter``."""
    alpha = env.model.geom_rgba[:, 3].copy()
    hide_distractors(env)
    try:
        return env._get_obs()  # so101_nexus' own observation, rendered now
    finally:
        env.model.geom_rgba[:, 3] = alpha


def environment_state_names(colors: list[str]) -> list[str]:
    """Names of :func:`environment_state`'s entries (the LeRobot feature's ``names``)."""
    names = ["cube.x", "cube.y", "cube.z", "cube.cos4yaw", "cube.sin4yaw"]
    names += ["goal.x", "goal.y", "goal.z"]
    for color in colors:
        names += [f"{color}_cube.x", f"{color}_cube.y", f"{color}_cube.z", f"{color}_cube.present"]
    return names


def environment_state(env: PickAndPlaceEnv, colors: list[str]) -> np.ndarray:
    """The privileged scene state now, float32 ``(8 + 4 * len(colors),)``, world frame, m.

    Layout (:func:`environment_state_names`)::

        cube.x, cube.y, cube.z             the named cube's centre (the one to move)
        cube.cos4yaw, cube.sin4yaw         its yaw psi as (cos 4 psi, sin 4 psi): a cube
                                           looks the same every 90 degrees, so this is
                                           the orientation a grasp can see
        goal.x, goal.y, goal.z             the goal disc's centre
        <c>_cube.x, .y, .z, .present       for each colour c of ``colors`` in order: the
                                           cube of that colour on the table (named or
                                           distractor), or zeros and present = 0 if none

    Args:
        env: an environment from :func:`make_env`, after :func:`reset_episode`.
        colors: the config's ``cube_colors`` (the order of the per-colour blocks).
    """
    import numpy as np

    from sigma_sim.expert import yaw_of

    cube = _body(env, f"pick_slot_{colors.index(env.cube_color_name)}")  # slot i: colors[i]
    yaw = yaw_of(env.data.xquat[cube])
    out = [*env.data.xpos[cube], math.cos(4 * yaw), math.sin(4 * yaw)]
    out += list(env.data.xpos[_body(env, "target")])
    slots = ["pick_slot", "distractor_slot"] if env.config.max_distractors else ["pick_slot"]
    for i in range(len(colors)):
        block = [0.0, 0.0, 0.0, 0.0]
        for slot in slots:
            if on_table(env, f"{slot}_{i}"):
                block = [*env.data.xpos[_body(env, f"{slot}_{i}")], 1.0]
        out += block
    return np.asarray(out, dtype=np.float32)


def reset_episode(
    env: PickAndPlaceEnv, seed: int, colors: list[str]
) -> tuple[dict[str, np.ndarray], dict[str, Any], Episode]:
    """Reset under ``seed`` so that no distractor shares the carried cube's colour.

    Args:
        env: an environment from :func:`make_env`.
        seed: the episode seed (fully determines the scene).
        colors: the config's ``cube_colors`` (the order of both object pools).

    Returns:
        The observation and info of the reset and the drawn :class:`Episode`.
    """
    import numpy as np

    obs, info = env.reset(seed=seed)
    distractors = active_distractors(env, colors)
    if env.cube_color_name in distractors:
        free = [i for i, c in enumerate(colors) if c not in distractors]
        pick = free[int(np.random.default_rng([seed, 1]).integers(len(free)))]
        obs, info = env.reset(seed=seed, options={"target_index": pick})
        distractors = active_distractors(env, colors)
    assert env.cube_color_name not in distractors
    cube = _body(env, f"pick_slot_{info['target_index']}")
    episode = Episode(
        seed=seed,
        task=env.task_description,
        cube_color=env.cube_color_name,
        target_color=env.target_color_name,
        distractor_colors=tuple(distractors),
        cube_pos=env.data.xpos[cube].copy(),
        cube_quat=env.data.xquat[cube].copy(),
        cube_half_size=float(env.cube_half_size),
        goal_pos=env.data.xpos[_body(env, "target")].copy(),
    )
    return obs, info, episode
