"""The ``data_source`` component ``so101-pickplace``: scripted SO-101 demonstrations."""

from __future__ import annotations

from typing import Any

from sigma_core.components import DataSource
from sigma_core.spec import Dims
from sigma_sim.config import So101PickPlaceConfig
from sigma_sim.render import ensure_gl_backend

ensure_gl_backend()  # before anything imports mujoco


class So101PickPlace(DataSource):
    """Scripted pick-and-place of the SO-101 arm in MuJoCo, written as a LeRobot v3 dataset.

    ``forward(out_dir, episodes, seed=0, progress=True)`` records until ``out_dir``
    holds ``episodes`` successful episodes (failed attempts are dropped), resuming
    a dataset that an earlier run with the same config and seed left there, and
    returns a summary::

        {"episodes", "attempts", "yield", "frames", "new_frames", "seconds",
         "frames_per_second", "out_dir", "repo_id", "fps", "cameras", "tasks"}

    ``yield`` is successes / attempts; ``frames_per_second`` counts the frames
    written by this call over its wall time (simulation, rendering and writing).
    See :mod:`sigma_sim.record` for the schema and :mod:`sigma_sim.journal` for
    the kill-safe commits.
    """

    name = "so101-pickplace"
    config_class = So101PickPlaceConfig

    def __init__(self, config: So101PickPlaceConfig, dims: Dims | None = None) -> None:
        super().__init__(config, dims if dims is not None else Dims())

    def forward(
        self, out_dir: str, episodes: int, seed: int = 0, progress: bool = True
    ) -> dict[str, Any]:
        """Write ``episodes`` successful episodes under ``out_dir``; return the summary."""
        from sigma_sim.record import record

        return record(self.config, out_dir, int(episodes), int(seed), progress)
