"""Entry point of sigma-vla-lerobot: the ``lerobot`` base policy (no torch at import)."""

from __future__ import annotations

from sigma_core import RegisterFn, hookimpl
from sigma_lerobot.config import LeRobotBaseConfig


@hookimpl
def sigma_register_components(register: RegisterFn) -> None:
    register(
        kind="base_policy",
        name="lerobot",
        config=LeRobotBaseConfig,
        impl="sigma_lerobot.base:LeRobotBase",
    )
