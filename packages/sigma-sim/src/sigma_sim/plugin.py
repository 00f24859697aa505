"""Entry point of sigma-vla-sim: the ``so101-pickplace`` data source (no torch, no mujoco)."""

from __future__ import annotations

from sigma_core import RegisterFn, hookimpl
from sigma_sim.config import So101PickPlaceConfig


@hookimpl
def sigma_register_components(register: RegisterFn) -> None:
    register(
        kind="data_source",
        name="so101-pickplace",
        config=So101PickPlaceConfig,
        impl="sigma_sim.source:So101PickPlace",
    )
