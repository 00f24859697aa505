"""Sigma-VLA's SO-101 pick-and-place scene as a LeRobot environment (``--env.type=sigma_so101``).

LeRobot's tools import every installed distribution named ``lerobot_env_*`` at start
(``lerobot.utils.import_utils.register_third_party_plugins``); importing this package
registers :class:`SigmaSo101Env` with LeRobot's ``EnvConfig`` registry and the
scene for so101_nexus's simulated follower (:mod:`lerobot_env_sigma.follower`) with
gymnasium. The simulator itself (:mod:`sigma_sim.gym_env`) loads when an
environment is built.
"""

from lerobot_env_sigma.configuration_sigma_so101 import ENV_TYPE, SigmaSo101Env
from lerobot_env_sigma.follower import FOLLOWER_ENV_ID, register_follower_env

register_follower_env()

__all__ = ["ENV_TYPE", "FOLLOWER_ENV_ID", "SigmaSo101Env"]
