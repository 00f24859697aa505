"""sigma-vla-core's own plugin: the components that ship with the core.

Registered through the ``sigma`` entry point like any third-party plugin.
Imports no torch: configs are registered eagerly, implementations lazily.
"""

from __future__ import annotations

from sigma_core.configs import CheckpointBaseConfig, InternalBaseConfig
from sigma_core.hookspecs import RegisterFn, hookimpl


@hookimpl
def sigma_register_components(register: RegisterFn) -> None:
    for name, config, impl in (
        ("internal", InternalBaseConfig, "InternalBasePolicy"),
        ("checkpoint", CheckpointBaseConfig, "CheckpointBasePolicy"),
    ):
        register(kind="base_policy", name=name, config=config, impl=f"sigma_core.base:{impl}")
