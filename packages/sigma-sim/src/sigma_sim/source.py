"""The ``data_source`` component ``so101-pickplace``: scripted SO-101 demonstrations."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sigma_core import DataSource
from sigma_sim.config import So101PickPlaceConfig
from sigma_sim.render import ensure_gl_backend

ensure_gl_backend()  # before anything imports mujoco


class So101PickPlace(DataSource):
    """Scripted pick-and-place of the SO-101 arm in MuJoCo, written as a LeRobot v3 dataset.

    ``write(out_dir, episodes, seed=0, progress=True)`` records until ``out_dir``
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

    @classmethod
    def contract_config(cls, workdir: Path | None = None) -> So101PickPlaceConfig:
        """32 px cameras: the contract kit's runs take seconds."""
        return So101PickPlaceConfig(image_size=32)

    def write(
        self, out_dir: str | Path, episodes: int, seed: int = 0, progress: bool = True
    ) -> dict[str, Any]:
        """Write ``episodes`` successful episodes under ``out_dir``; return the summary."""
        from sigma_sim.record import record

        return record(self.config, str(out_dir), int(episodes), int(seed), progress)
