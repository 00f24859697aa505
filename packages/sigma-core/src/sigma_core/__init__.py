"""Sigma-VLA core: interfaces, plugin registry, run spec, assembly, contract kit.

Importing ``sigma_core`` does not import torch. The names below that need torch
(components, types, the policy) load on first access.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from sigma_core._version import __version__
from sigma_core.errors import SigmaUserError, SpecError, UnknownComponentError
from sigma_core.hookspecs import hookimpl, hookspec
from sigma_core.kinds import KINDS, MODEL_SLOTS
from sigma_core.registry import ComponentInfo, Registry, get_registry, load_registry
from sigma_core.spec import Dims, SigmaSpec, StrictModel, load_spec, validate_spec

_LAZY = {
    "SigmaPolicy": "sigma_core.policy",
    "build_policy": "sigma_core.policy",
    "build_component": "sigma_core.policy",
    "Component": "sigma_core.components",
    "ActionSet": "sigma_core.types",
    "SigmaBatch": "sigma_core.types",
    "SigmaOutput": "sigma_core.types",
}

if TYPE_CHECKING:
    from sigma_core.components import Component
    from sigma_core.policy import SigmaPolicy, build_component, build_policy
    from sigma_core.types import ActionSet, SigmaBatch, SigmaOutput

__all__ = [
    "KINDS",
    "MODEL_SLOTS",
    "ActionSet",
    "Component",
    "ComponentInfo",
    "Dims",
    "Registry",
    "SigmaBatch",
    "SigmaOutput",
    "SigmaPolicy",
    "SigmaSpec",
    "SigmaUserError",
    "SpecError",
    "StrictModel",
    "UnknownComponentError",
    "__version__",
    "build_component",
    "build_policy",
    "get_registry",
    "hookimpl",
    "hookspec",
    "load_registry",
    "load_spec",
    "validate_spec",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'sigma_core' has no attribute {name!r}")
