"""The feature schema of ``lerobot/svla_so101_pickplace`` (the paper's dataset).

6 joints named ``*.pos`` in degrees (gripper 0-100), float32 ``action`` and
``observation.state``, cameras ``observation.images.<name>`` (HWC uint8), 30 fps,
robot type ``so100_follower``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sigma_core import Dims

JOINTS = (
    "shoulder_pan.pos",
    "shoulder_lift.pos",
    "elbow_flex.pos",
    "wrist_flex.pos",
    "wrist_roll.pos",
    "gripper.pos",
)
FPS = 30
ROBOT_TYPE = "so100_follower"
#: Written next to LeRobot's metadata by a simulator that recorded the dataset (sigma_sim's
#: journal): its ``source`` and ``config`` are the scene's settings, which a closed-loop
#: evaluation must rebuild (``sigma_lerobot.dataset.recording``).
RECORDING_FILE = "meta/sigma_sim.json"
#: The prefix of a camera's key: ``observation.images.<camera>``.
IMAGE_PREFIX = "observation.images."


#: LeRobot's key for privileged simulator state (object poses), as its gym envs use it.
ENVIRONMENT_STATE = "observation.environment_state"


def so101_features(
    cameras: dict[str, tuple[int, int]],
    use_videos: bool = True,
    environment_state: list[str] | None = None,
) -> dict[str, Any]:
    """LeRobot ``features`` for SO-101 data with ``cameras`` name -> (height, width),
    and a float32 ``observation.environment_state`` with these ``names`` when given."""
    joint = {"dtype": "float32", "shape": (len(JOINTS),), "names": list(JOINTS)}
    features: dict[str, Any] = {"action": dict(joint), "observation.state": dict(joint)}
    if environment_state:
        features[ENVIRONMENT_STATE] = {
            "dtype": "float32",
            "shape": (len(environment_state),),
            "names": list(environment_state),
        }
    for name, (h, w) in cameras.items():
        features[f"observation.images.{name}"] = {
            "dtype": "video" if use_videos else "image",
            "shape": (h, w, 3),
            "names": ["height", "width", "channels"],
        }
    return features


def lerobot_features(dims: Dims, image_size: int | None = None) -> tuple[dict, dict]:
    """LeRobot input/output features at ``dims``: ``observation.images.<camera>`` (3, P, P)
    with P = ``image_size`` or the spec's, ``observation.state``, ``action``."""
    from lerobot.configs.types import FeatureType, PolicyFeature

    p = image_size or dims.image_size
    inputs = {
        f"{IMAGE_PREFIX}{cam}": PolicyFeature(type=FeatureType.VISUAL, shape=(3, p, p))
        for cam in dims.cameras
    }
    inputs["observation.state"] = PolicyFeature(type=FeatureType.STATE, shape=(dims.state_dim,))
    outputs = {"action": PolicyFeature(type=FeatureType.ACTION, shape=(dims.action_dim,))}
    return inputs, outputs
