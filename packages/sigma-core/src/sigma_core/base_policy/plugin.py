"""sigma-vla-core's own plugin: the base policies that ship with the core.

Registered through the ``sigma`` entry point like any third-party plugin, and
shaped like one (``plugin.py`` / ``config.py`` / ``modeling.py``). Imports no
torch: configs are registered eagerly, implementations lazily.
"""

from __future__ import annotations

from sigma_core.base_policy.config import CheckpointBaseConfig, InternalBaseConfig
from sigma_core.plugins.hookspecs import RegisterFn, hookimpl


@hookimpl
def sigma_register_components(register: RegisterFn) -> None:
    """Register ``base_policy: internal`` and ``base_policy: checkpoint``."""
    for name, config, impl in (
        ("internal", InternalBaseConfig, "InternalBasePolicy"),
        ("checkpoint", CheckpointBaseConfig, "CheckpointBasePolicy"),
    ):
        register(
            kind="base_policy",
            name=name,
            config=config,
            impl=f"sigma_core.base_policy.modeling:{impl}",
        )
