"""SO-101 pick-and-place demonstrations in simulation, recorded as LeRobot datasets.

The ``so101-pickplace`` data source (:class:`sigma_sim.source.So101PickPlace`,
configured by :class:`So101PickPlaceConfig`) scripts an inverse-kinematics
expert in the ``so101-nexus`` MuJoCo simulator and writes the successful
episodes through LeRobot's dataset writer. Importing this package is light (no
torch, mujoco or LeRobot); they load when recording starts.
"""

from sigma_core import __version__
from sigma_sim.config import PALETTE, So101PickPlaceConfig

__all__ = ["PALETTE", "So101PickPlaceConfig", "__version__"]
