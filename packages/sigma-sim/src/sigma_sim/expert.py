"""A scripted pick-and-place expert: top-down grasps by inverse kinematics on sim state.

The plan is a chain of tool-centre-point (TCP, the ``gripperframe`` site) poses,
each pointing straight down with a yaw that lines the jaws up with the cube's
faces::

    approach (joint-space move above the cube, gripper opening)
    -> descend -> grasp (close) -> lift -> carry (above the goal disc)
    -> lower -> release (open) -> retreat (up)

Cartesian segments are interpolated with a minimum-jerk profile and solved by
damped least squares (``so101_nexus.kinematics.ee_ik_delta_q``, warm-started
from the previous step) on a scratch ``MjData``, so the live simulation is never
perturbed. The result is one joint-target vector per control step
(``pd_joint_pos`` actions, radians); per-episode speed, heights and gripper
opening are drawn from the episode's random generator for some variety.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import mujoco

    from sigma_sim.scene import Episode

#: Where the cube centre sits in the TCP frame when grasped (x: towards the fixed
#: jaw, z: along the fingers). The fixed fingertip is at x = +20 mm, z = +3 mm, so
#: the cube's face ends up ~3 mm from it and the fingertips ~5 mm above the floor.
GRASP_OFFSET = np.array([0.0045, 0.0, -0.0045])
GRIPPER_CLOSED = -0.1745  # radians: the lower limit, so the jaws keep squeezing
IK_TOLERANCE = 5e-5  # metres: stop iterating below this position error...
IK_ANGLE_TOLERANCE = 2e-3  # ...and this orientation error (radians)
ORIENTATION_WEIGHT = 0.05  # metres per radian


def min_jerk(n: int) -> np.ndarray:
    """``n`` samples in (0, 1] of the minimum-jerk profile ``10s^3 - 15s^4 + 6s^5``."""
    s = np.arange(1, n + 1) / n
    return s**3 * (10 - 15 * s + 6 * s**2)


def top_down_quat(yaw: float) -> np.ndarray:
    """``[w, x, y, z]`` of a TCP frame whose z axis points down and x axis has ``yaw``."""
    import mujoco

    c, s = math.cos(yaw), math.sin(yaw)
    mat = np.array([[c, s, 0.0], [s, -c, 0.0], [0.0, 0.0, -1.0]])  # columns x, y, z
    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, mat.flatten())
    return quat


def yaw_of(quat: np.ndarray) -> float:
    """Yaw (rotation about world z) of a ``[w, x, y, z]`` quaternion."""
    w, x, y, z = quat
    return math.atan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z))


def wrap(angle: float) -> float:
    """Angle wrapped to [-pi, pi)."""
    return (angle + math.pi) % (2 * math.pi) - math.pi


def grasp_yaw(cube_pos: np.ndarray, cube_quat: np.ndarray) -> float:
    """TCP yaw that squares the jaws with the cube and keeps the wrist near neutral.

    With wrist_roll at zero a top-down TCP's x axis points back at the robot base
    (yaw = azimuth + pi); of the four yaws that face the cube, take the closest.
    """
    neutral = math.atan2(cube_pos[1], cube_pos[0]) + math.pi
    face = yaw_of(cube_quat)
    candidates = [face + k * math.pi / 2 for k in range(4)]
    return min(candidates, key=lambda y: abs(wrap(y - neutral)))


class TopDownIK:
    """Damped-least-squares IK of the five arm joints for a TCP pose (sim model).

    Args:
        model: the compiled scene (only kinematics are read).
        site: the TCP site name.
        joints: the arm joint names.
        low / high: joint-target bounds (default: the joint ranges).
    """

    def __init__(
        self,
        model: mujoco.MjModel,
        site: str,
        joints: tuple[str, ...],
        low: np.ndarray | None = None,
        high: np.ndarray | None = None,
    ) -> None:
        import mujoco

        self.model = model
        self.data = mujoco.MjData(model)
        self.site = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, site)
        ids = [mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, j) for j in joints]
        self.qpos_adr = np.array([model.jnt_qposadr[j] for j in ids])
        self.dof_adr = np.array([model.jnt_dofadr[j] for j in ids])
        self.low = model.jnt_range[ids, 0].copy() if low is None else np.asarray(low, float)
        self.high = model.jnt_range[ids, 1].copy() if high is None else np.asarray(high, float)
        self._jacp = np.zeros((3, model.nv))
        self._jacr = np.zeros((3, model.nv))

    def forward(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """TCP position and ``[w, x, y, z]`` orientation for arm joints ``q``."""
        import mujoco

        self.data.qpos[self.qpos_adr] = q
        mujoco.mj_kinematics(self.model, self.data)
        quat = np.zeros(4)
        mujoco.mju_mat2Quat(quat, self.data.site_xmat[self.site])
        return self.data.site_xpos[self.site].copy(), quat

    def solve(
        self, pos: np.ndarray, quat: np.ndarray, q0: np.ndarray, iterations: int = 100
    ) -> tuple[np.ndarray, float]:
        """Joints reaching (``pos``, ``quat``) from the guess ``q0``; also the position error.

        Orientation is weighted ``ORIENTATION_WEIGHT`` (metres per radian). Near the
        table a top-down pose is reachable exactly (the tool axis stays in the
        arm's vertical plane), so the weight shapes only the path of the
        iteration; higher up, far from the base, wrist_flex reaches its limit
        first. Joints at a limit that the step would push further are taken out
        of the solve (a simple active set), so the other joints keep the position
        exact and the tool tilts instead.
        """
        import mujoco
        from so101_nexus.kinematics import ee_ik_delta_q

        q = np.clip(np.asarray(q0, dtype=np.float64), self.low, self.high)
        err = math.inf
        for _ in range(iterations):
            cur_pos, cur_quat = self.forward(q)
            err = float(np.linalg.norm(pos - cur_pos))
            if err < IK_TOLERANCE and _angle(cur_quat, quat) < IK_ANGLE_TOLERANCE:
                break
            mujoco.mj_comPos(self.model, self.data)
            mujoco.mj_jacSite(self.model, self.data, self._jacp, self._jacr, self.site)
            jac = np.vstack([self._jacp[:, self.dof_adr], self._jacr[:, self.dof_adr]])
            free = np.ones(len(q), dtype=bool)
            dq = np.zeros(len(q))
            for _ in range(len(q)):
                dq[:] = 0.0
                dq[free] = ee_ik_delta_q(
                    jac[:, free],
                    cur_pos,
                    cur_quat,
                    pos,
                    quat,
                    orientation_weight=ORIENTATION_WEIGHT,
                    damping=0.01,
                )
                blocked = free & (
                    ((q <= self.low + 1e-9) & (dq < 0)) | ((q >= self.high - 1e-9) & (dq > 0))
                )
                if not blocked.any():
                    break
                free &= ~blocked
            q = np.clip(q + dq, self.low, self.high)
            if np.abs(dq).max() < 1e-5:  # converged (to a tilted pose if out of reach)
                break
        return q, err


def _angle(a: np.ndarray, b: np.ndarray) -> float:
    """Rotation angle between two unit quaternions."""
    return 2 * math.acos(min(1.0, abs(float(np.dot(a, b)))))


@dataclass(frozen=True)
class Style:
    """Per-episode variation of the script (drawn by :meth:`Style.sample`)."""

    speed: float = 1.0  # >1 is faster
    hover: float = 0.06  # m above the grasp pose before descending
    carry: float = 0.08  # m: carry height of the cube centre above its rest height
    gripper_open: float = 0.6  # rad

    @classmethod
    def sample(cls, rng: np.random.Generator) -> Style:
        """A random style: speed 0.85-1.2, hover 5-8 cm, carry 6-10 cm, opening 0.5-0.8."""
        return cls(
            speed=float(rng.uniform(0.85, 1.2)),
            hover=float(rng.uniform(0.05, 0.08)),
            carry=float(rng.uniform(0.06, 0.10)),
            gripper_open=float(rng.uniform(0.5, 0.8)),
        )


@dataclass(frozen=True)
class Plan:
    """Joint targets (T, 6) in radians, and the frame index where the lift ends."""

    actions: np.ndarray
    lift_end: int
    max_ik_error: float


class PickPlaceExpert:
    """Plans a whole pick-and-place as joint targets from the reset state."""

    def __init__(self, model: mujoco.MjModel, fps: int, low: np.ndarray, high: np.ndarray) -> None:
        """``low`` / ``high``: the env's six joint-target bounds (its action space)."""
        from so101_nexus import SO101_JOINT_NAMES, SO101_TCP_SITE_NAME

        self.fps = fps
        self.ik = TopDownIK(
            model, SO101_TCP_SITE_NAME, tuple(SO101_JOINT_NAMES[:5]), low[:5], high[:5]
        )

    def _frames(self, seconds: float, style: Style) -> int:
        return max(2, round(seconds / style.speed * self.fps))

    def plan(self, episode: Episode, q_start: np.ndarray, style: Style) -> Plan:
        """Joint targets for ``episode`` starting from the measured joints ``q_start`` (6,)."""
        import mujoco

        quat = top_down_quat(grasp_yaw(episode.cube_pos, episode.cube_quat))
        rot = np.zeros(9)
        mujoco.mju_quat2Mat(rot, quat)
        offset = rot.reshape(3, 3) @ GRASP_OFFSET  # TCP -> cube centre, world frame
        up = np.array([0.0, 0.0, 1.0])
        grasp = episode.cube_pos - offset
        place_centre = np.array(
            [episode.goal_pos[0], episode.goal_pos[1], episode.cube_half_size + 0.004]
        )
        place = place_centre - offset
        lift = grasp + up * style.carry
        above_goal = np.array([place[0], place[1], lift[2]])

        arm, grip = np.asarray(q_start[:5], dtype=np.float64), float(q_start[5])
        rows: list[np.ndarray] = []
        worst = 0.0

        def hold(seconds: float, g_to: float) -> None:
            nonlocal grip
            for s in min_jerk(self._frames(seconds, style)):
                rows.append(np.append(arm, grip + (g_to - grip) * s))
            grip = g_to

        def move(to: np.ndarray, seconds: float) -> None:
            nonlocal arm, worst
            start, _ = self.ik.forward(arm)
            for s in min_jerk(self._frames(seconds, style)):
                arm, err = self.ik.solve(start + (to - start) * s, quat, arm)
                worst = max(worst, err)
                rows.append(np.append(arm, grip))

        # approach: a joint-space move to the hover pose while the gripper opens
        hover_q, err = self.ik.solve(grasp + up * style.hover, quat, arm, iterations=300)
        worst = max(worst, err)
        for s in min_jerk(self._frames(1.4, style)):
            rows.append(
                np.append(arm + (hover_q - arm) * s, grip + (style.gripper_open - grip) * s)
            )
        arm, grip = hover_q, style.gripper_open
        move(grasp, 0.9)  # descend
        hold(0.5, GRIPPER_CLOSED)  # grasp
        move(lift, 0.8)
        lift_end = len(rows)
        move(above_goal, 0.3 + 6.0 * float(np.linalg.norm(above_goal - lift)))  # carry
        move(place, 0.8)  # lower
        hold(0.4, style.gripper_open)  # release
        move(place + up * style.hover, 0.6)  # retreat
        return Plan(np.asarray(rows), lift_end, worst)
