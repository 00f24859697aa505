"""so101_nexus's simulated SO-101 follower in Sigma's scene, for ``lerobot-rollout``.

LeRobot deploys policies on robots (``lerobot-rollout``); ``so101_nexus.lerobot_adapter``
provides a simulated follower, ``--robot.type=sim_so_follower``, that steps a gymnasium
env. Three things make it run Sigma's scene:

* the env: importing :mod:`lerobot_env_sigma` (LeRobot's tools do, at start) registers
  :data:`FOLLOWER_ENV_ID`, the so101-pickplace scene of ``sigma_sim`` (cameras
  ``overhead_camera`` and ``wrist_camera`` at ``image_size``, 30 fps control,
  ``reset(seed=s)`` = evaluation episode ``s``; :func:`sigma_sim.gym_env.make_follower_env`),
  configured by ``--robot.env_kwargs``;
* a calibration file: the follower converts joints through Feetech motor ticks and
  refuses to connect without one; :func:`write_calibration` writes so101_nexus's
  synthetic calibration where LeRobot looks for it;
* cameras: ``--robot.cameras`` naming the simulator's images ``overhead`` and ``wrist``
  (the recorded datasets' and the policies' camera names).

:func:`robot_args` gives the flags; ``sigma-so101-follower`` (:func:`main`) writes the
calibration and prints them.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Any

#: gymnasium id of Sigma's scene for the follower (registered on import of the package).
FOLLOWER_ENV_ID = "SigmaSO101PickPlace-v0"
#: so101_nexus's simulated follower and the module that registers it with LeRobot.
ROBOT_TYPE = "sim_so_follower"
ROBOT_PACKAGE = "so101_nexus.lerobot_adapter"
#: camera name -> simulator observation key (sigma_sim.gym_env.CAMERAS).
CAMERA_SOURCES = {"overhead": "overhead_camera", "wrist": "wrist_camera"}
#: The scene's control rate (sigma_sim's default fps; lerobot-rollout's --fps default).
FPS = 30


def register_follower_env() -> None:
    """Register :data:`FOLLOWER_ENV_ID` with gymnasium (idempotent; imports no simulator)."""
    import gymnasium as gym

    if FOLLOWER_ENV_ID not in gym.registry:
        gym.register(FOLLOWER_ENV_ID, entry_point="sigma_sim.gym_env:make_follower_env")


def calibration_dir() -> Path:
    """LeRobot's folder of the follower's calibration: ``$HF_LEROBOT_CALIBRATION/robots/<type>``."""
    from lerobot.utils.constants import HF_LEROBOT_CALIBRATION, ROBOTS

    return Path(HF_LEROBOT_CALIBRATION) / ROBOTS / ROBOT_TYPE


def write_calibration(robot_id: str = "sim", directory: Path | None = None) -> Path:
    """Write so101_nexus's synthetic calibration for ``--robot.id=robot_id``; return its path.

    ``directory`` defaults to :func:`calibration_dir` (else pass it to LeRobot as
    ``--robot.calibration_dir``). Written to a temporary name and renamed into place.
    """
    from so101_nexus.lerobot_adapter.synthetic_calibration import write_synthetic_calibration

    target = Path(directory) if directory is not None else calibration_dir()
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target, prefix=".calibration-") as tmp:
        written = write_synthetic_calibration(Path(tmp), robot_id)
        final = target / written.name
        os.replace(written, final)
    return final


def robot_args(
    robot_id: str = "sim",
    image_size: int = 96,
    scene: str | None = None,
    settings: dict[str, Any] | None = None,
    directory: Path | None = None,
) -> list[str]:
    """``lerobot-rollout`` / ``lerobot-record`` flags for the follower in Sigma's scene.

    Args:
        robot_id: ``--robot.id`` (names the calibration file).
        image_size: square camera images, pixels (the policy's image size).
        scene: shards or a recorded dataset whose scene to use (colours, spawn region).
        settings: more ``So101PickPlaceConfig`` fields, e.g. ``{"cube_colors": ["red"],
            "target_colors": ["blue"]}`` so that one instruction (``--task``) fits
            every episode.
        directory: the calibration folder, when not LeRobot's default.
    """
    kwargs: dict[str, Any] = {"image_size": image_size, **(settings or {})}
    if scene:
        kwargs["scene"] = str(scene)
    cameras = {
        name: {"type": "sim", "source": source, "width": image_size, "height": image_size}
        | {"fps": FPS}
        for name, source in CAMERA_SOURCES.items()
    }
    args = [
        f"--robot.type={ROBOT_TYPE}",
        f"--robot.discover_packages_path={ROBOT_PACKAGE}",
        f"--robot.env_id={FOLLOWER_ENV_ID}",
        f"--robot.id={robot_id}",
        f"--robot.env_kwargs={json.dumps(kwargs)}",
        f"--robot.cameras={json.dumps(cameras)}",
    ]
    if directory is not None:
        args.append(f"--robot.calibration_dir={directory}")
    return args


def main(argv: list[str] | None = None) -> int:
    """``sigma-so101-follower``: write the calibration, print the ``--robot.*`` flags."""
    parser = argparse.ArgumentParser(
        prog="sigma-so101-follower",
        description="Prepare so101_nexus's simulated follower (sim_so_follower) in Sigma's "
        "scene for lerobot-rollout: write its synthetic calibration and print the flags.",
    )
    parser.add_argument("--id", default="sim", help="--robot.id (default: sim)")
    parser.add_argument("--image-size", type=int, default=96, help="camera pixels (default 96)")
    parser.add_argument("--scene", help="shards or a recorded dataset: use its scene")
    parser.add_argument("--cube-color", help="always this cube colour (one instruction fits)")
    parser.add_argument("--target-color", help="always this goal disc colour")
    parser.add_argument("--calibration-dir", type=Path, help="default: LeRobot's")
    args = parser.parse_args(argv)
    if not 16 <= args.image_size <= 512:
        print(f"error: --image-size must be 16..512, got {args.image_size}", file=sys.stderr)
        return 2
    if args.scene and not Path(args.scene).exists():
        print(f"error: --scene {args.scene}: no such file or directory", file=sys.stderr)
        return 2
    settings: dict[str, Any] = {}
    for key, value in (("cube_colors", args.cube_color), ("target_colors", args.target_color)):
        if value:
            from sigma_sim.config import PALETTE

            if value not in PALETTE:
                flag = "--" + key.replace("_colors", "-color").replace("_", "-")
                print(f"error: {flag} {value!r}: one of {', '.join(PALETTE)}", file=sys.stderr)
                return 2
            settings[key] = [value]
    path = write_calibration(args.id, args.calibration_dir)
    print(f"# calibration: {path}", file=sys.stderr)
    flags = robot_args(args.id, args.image_size, args.scene, settings, args.calibration_dir)
    print(" \\\n".join(shlex.quote(f) for f in flags))
    return 0


__all__ = [
    "CAMERA_SOURCES",
    "FOLLOWER_ENV_ID",
    "ROBOT_PACKAGE",
    "ROBOT_TYPE",
    "calibration_dir",
    "main",
    "register_follower_env",
    "robot_args",
    "write_calibration",
]


if __name__ == "__main__":
    sys.exit(main())
