"""Entry point of sigma-vla-action: query generator, branches, residual, fusion (no torch)."""

from __future__ import annotations

from sigma_action import config as c
from sigma_core import RegisterFn, hookimpl

_COMPONENTS = (
    ("action.query", "sigma", c.SigmaQueryConfig, "query:SigmaQuery"),
    ("action.vector", "token", c.TokenVectorConfig, "branches:TokenVector"),
    ("action.vector", "mlp", c.MlpVectorConfig, "branches:MlpVector"),
    ("action.chunk", "chunk-pooling", c.ChunkPoolingConfig, "branches:ChunkPooling"),
    ("action.chunk", "chunk-mlp", c.ChunkMlpConfig, "branches:ChunkMlp"),
    ("action.trajectory", "mlp", c.MlpTrajectoryConfig, "branches:MlpTrajectory"),
    ("action.trajectory", "flow-dit", c.FlowDiTConfig, "flow:FlowDiT"),
    ("residual", "mlp", c.MlpResidualConfig, "heads:MlpResidual"),
    ("fusion", "weighted", c.WeightedFusionConfig, "heads:WeightedFusion"),
    ("controller", "clip", c.ClipControllerConfig, "control:ClipController"),
    ("adapter", "risk", c.RiskAdapterConfig, "control:RiskAdapter"),
    ("adapter", "identity", c.IdentityAdapterConfig, "control:IdentityAdapter"),
)


@hookimpl
def sigma_register_components(register: RegisterFn) -> None:
    for kind, name, config, impl in _COMPONENTS:
        register(kind=kind, name=name, config=config, impl=f"sigma_action.{impl}")
