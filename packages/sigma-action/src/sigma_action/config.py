"""Configs of the action-workspace components (pydantic only: no torch)."""

from __future__ import annotations

from pydantic import Field, PositiveInt, model_validator

from sigma_core import StrictModel


class SigmaQueryConfig(StrictModel):
    """Condition projector + query generator."""

    num_queries: PositiveInt = Field(8, description="N_q learnable query seeds")
    num_heads: PositiveInt = 4
    num_layers: PositiveInt = Field(1, description="transformer refinement layers")
    attend_vision: bool = Field(True, description="queries attend to V_mod as well as state")
    dropout: float = Field(0.0, ge=0, lt=1)


class TokenVectorConfig(StrictModel):
    """Token head over a uniform binning action tokenizer."""

    num_bins: PositiveInt = Field(256, ge=2)
    low: float = Field(-4.0, description="lowest bin edge (normalized action units)")
    high: float = Field(4.0, description="highest bin edge (normalized action units)")
    decode: str = Field("expectation", pattern="^(expectation|argmax)$")

    @model_validator(mode="after")
    def _range(self) -> TokenVectorConfig:
        if self.high <= self.low:
            raise ValueError("high must be greater than low")
        return self


class ChunkPoolingConfig(StrictModel):
    """Pool the queries, then one linear map to the chunk."""

    pooling: str = Field("mean", pattern="^(mean|attention)$")


class MlpVectorConfig(StrictModel):
    """Deterministic MLP regression of the one-step action (MSE loss)."""

    hidden_mult: PositiveInt = 2


class MlpTrajectoryConfig(StrictModel):
    """Deterministic MLP regression of the whole trajectory."""

    hidden_mult: PositiveInt = 2


class MlpResidualConfig(StrictModel):
    """Residual heads g([high_level_rep, tau]) as MLPs."""

    hidden_mult: PositiveInt = 2
    zero_init: bool = Field(True, description="start with delta_a = 0 (pure base)")


class WeightedFusionConfig(StrictModel):
    """Learned softmax weights over the three scales per plan step."""


class ClipControllerConfig(StrictModel):
    """Clip to joint limits (normalized units; set from dataset statistics) and smooth."""

    low: list[float] | None = Field(None, description="per-joint lower limits; null: none")
    high: list[float] | None = Field(None, description="per-joint upper limits; null: none")
    smoothing: float = Field(0.0, ge=0, lt=1, description="EMA weight on the previous command")


class RiskAdapterConfig(StrictModel):
    """Risk-scaled residual (paper §5)."""

    min_scale: float = Field(0.0, ge=0)
    max_scale: float = Field(1.0, ge=0)
    temperature: float = Field(1.0, gt=0)
    w_ratio: float = Field(1.0, ge=0, description="weight of ||delta_a|| / ||a_base||")
    w_tau: float = Field(0.1, ge=0, description="weight of ||tau|| / sqrt(E)")
    w_align: float = Field(1.0, ge=0, description="weight of (1 - cos(tau, c_act)) / 2")
    fallback_below: float = Field(0.05, ge=0, description="scales below this fall back to 0")

    @model_validator(mode="after")
    def _range(self) -> RiskAdapterConfig:
        if self.max_scale < self.min_scale:
            raise ValueError("max_scale must be >= min_scale")
        return self


class FlowDiTConfig(StrictModel):
    """Trajectory DiT trained by flow matching, sampled with N Euler steps."""

    num_layers: PositiveInt = 2
    num_heads: PositiveInt = 4
    width: PositiveInt | None = Field(
        None, description="DiT width (default D); narrower is cheaper at large D"
    )
    num_steps: PositiveInt = Field(10, description="N Euler steps when sampling")
    mlp_mult: PositiveInt = 4
    time_frequencies: PositiveInt = Field(32, description="sinusoidal features of t")


class ChunkMlpConfig(StrictModel):
    """Two-layer MLP from the pooled queries and condition to the chunk."""

    hidden_mult: PositiveInt = 2


class IdentityAdapterConfig(StrictModel):
    """No parameters: the residual is applied in full (scale 1), for ablations."""
