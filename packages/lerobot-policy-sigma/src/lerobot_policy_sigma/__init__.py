"""Sigma-VLA as a LeRobot policy (``--policy.type=sigma``).

Importing the package registers :class:`SigmaConfig` with LeRobot; LeRobot finds
``SigmaPolicy`` in :mod:`.modeling_sigma` and ``make_sigma_pre_post_processors``
in :mod:`.processor_sigma` by its naming convention.
"""

from lerobot_policy_sigma.configuration_sigma import SigmaConfig

__all__ = ["SigmaConfig"]
