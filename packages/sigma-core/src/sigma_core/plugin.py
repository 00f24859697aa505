"""sigma-vla-core's own plugin: the components that ship with the core.

Registered through the ``sigma`` entry point like any third-party plugin.
Imports no torch: configs are registered eagerly, implementations lazily.
"""

from __future__ import annotations

from sigma_core.configs import InternalBaseConfig
from sigma_core.hookspecs import RegisterFn, hookimpl


@hookimpl
def sigma_register_components(register: RegisterFn) -> None:
    register(
        kind="base_policy",
        name="internal",
        config=InternalBaseConfig,
        impl="sigma_core.base:InternalBasePolicy",
    )
