"""Sigma-VLA core: the public facade of ``sigma-vla-core``.

Other packages (and plugin authors) import from here, from the room facades
:mod:`sigma_core.data`, :mod:`sigma_core.train` and :mod:`sigma_core.testing`,
and from :mod:`sigma_core.layers`; everything else is internal and may move.
The rooms (docs/guide.md, "Inside `sigma_core`"; layers enforced by import-linter)::

    config, components, types, kinds, errors, layers   contracts (bottom layer)
    pretrained    pretrained weights shared once per build, never saved again
    plugins/      hook specs and the component registry
    spec          the run file: sections, YAML with line numbers, validation
    data/         windows, shards, the loader (independent of the model)
    model/        SigmaPolicy and its saved format
    base_policy/  the built-in base policies, shaped like a third-party plugin
    train/        the loop, objectives, stages, optimizer, runtime, checkpoints
    testing/      the contract kit (a pytest plugin) and fakes

Importing ``sigma_core`` does not import torch: the names below that need it
(the kind ABCs, batch types, the policy) load on first access.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from sigma_core._fileio import atomic_dir, atomic_write_bytes, sha256_file
from sigma_core._version import __version__
from sigma_core.config import Dims, StrictModel
from sigma_core.errors import (
    SigmaUserError,
    SpecError,
    UnknownComponentError,
    is_internal_error,
)
from sigma_core.kinds import KINDS, MODEL_SLOTS
from sigma_core.plugins import (
    ComponentInfo,
    RegisterFn,
    Registry,
    get_registry,
    hookimpl,
    hookspec,
    load_registry,
)
from sigma_core.pretrained import (
    local_directory,
    register_pretrained,
    shared,
    sharing,
    source_record,
    weights_fingerprint,
)
from sigma_core.reference import spec_reference, spec_schema
from sigma_core.spec import ComponentRef, SigmaSpec, load_spec, validate_spec

_ABCS = (
    "Component",
    "VisionWorkspace",
    "Backbone",
    "SemanticMemory",
    "IntentWorkspace",
    "MemoryFn",
    "ActionQuery",
    "VectorBranch",
    "ChunkBranch",
    "TrajectoryBranch",
    "ResidualHead",
    "Fusion",
    "Controller",
    "InferenceAdapter",
    "BasePolicy",
    "DataSource",
)
_TYPES = (
    "ActionSet",
    "AdapterOutput",
    "SigmaBatch",
    "SigmaOutput",
    "VisionOutput",
    "BackboneOutput",
    "IntentOutput",
    "QueryOutput",
)
_LAZY = {
    **dict.fromkeys(_ABCS, "sigma_core.components"),
    **dict.fromkeys(_TYPES, "sigma_core.types"),
    "SigmaPolicy": "sigma_core.model",
    "build_policy": "sigma_core.model",
    "build_component": "sigma_core.model",
    "parameter_counts": "sigma_core.model",
    "make_portable": "sigma_core.model.bundle",
    "resolve_bundled": "sigma_core.model.bundle",
}

if TYPE_CHECKING:
    from sigma_core.components import (
        ActionQuery,
        Backbone,
        BasePolicy,
        ChunkBranch,
        Component,
        Controller,
        DataSource,
        Fusion,
        InferenceAdapter,
        IntentWorkspace,
        MemoryFn,
        ResidualHead,
        SemanticMemory,
        TrajectoryBranch,
        VectorBranch,
        VisionWorkspace,
    )
    from sigma_core.model import SigmaPolicy, build_component, build_policy, parameter_counts
    from sigma_core.model.bundle import make_portable, resolve_bundled
    from sigma_core.types import (
        ActionSet,
        AdapterOutput,
        BackboneOutput,
        IntentOutput,
        QueryOutput,
        SigmaBatch,
        SigmaOutput,
        VisionOutput,
    )

__all__ = [
    "KINDS",
    "MODEL_SLOTS",
    "ActionQuery",
    "ActionSet",
    "AdapterOutput",
    "Backbone",
    "BackboneOutput",
    "BasePolicy",
    "ChunkBranch",
    "Component",
    "ComponentInfo",
    "ComponentRef",
    "Controller",
    "DataSource",
    "Dims",
    "Fusion",
    "InferenceAdapter",
    "IntentOutput",
    "IntentWorkspace",
    "MemoryFn",
    "QueryOutput",
    "RegisterFn",
    "Registry",
    "ResidualHead",
    "SemanticMemory",
    "SigmaBatch",
    "SigmaOutput",
    "SigmaPolicy",
    "SigmaSpec",
    "SigmaUserError",
    "SpecError",
    "StrictModel",
    "TrajectoryBranch",
    "UnknownComponentError",
    "VectorBranch",
    "VisionOutput",
    "VisionWorkspace",
    "__version__",
    "atomic_dir",
    "atomic_write_bytes",
    "build_component",
    "build_policy",
    "get_registry",
    "hookimpl",
    "hookspec",
    "is_internal_error",
    "load_registry",
    "load_spec",
    "local_directory",
    "make_portable",
    "parameter_counts",
    "register_pretrained",
    "resolve_bundled",
    "sha256_file",
    "shared",
    "sharing",
    "source_record",
    "spec_reference",
    "spec_schema",
    "validate_spec",
    "weights_fingerprint",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'sigma_core' has no attribute {name!r}")
