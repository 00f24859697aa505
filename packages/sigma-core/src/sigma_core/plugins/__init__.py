"""The plugin side of Sigma: hook specifications and the component registry.

Light on purpose (pluggy + pydantic, no torch): ``sigma plugins`` and
``sigma build --dry-run`` run on this room alone.
"""

from sigma_core.plugins.hookspecs import RegisterFn, hookimpl, hookspec
from sigma_core.plugins.registry import (
    ENTRY_POINT_GROUP,
    ComponentInfo,
    PluginInfo,
    Registry,
    get_registry,
    load_registry,
    unknown_component_message,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "ComponentInfo",
    "PluginInfo",
    "RegisterFn",
    "Registry",
    "get_registry",
    "hookimpl",
    "hookspec",
    "load_registry",
    "unknown_component_message",
]
