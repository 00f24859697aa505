"""Configs of the vision components (pydantic only: imported by the plugin without torch)."""

from __future__ import annotations

from pydantic import Field, PositiveInt

from sigma_core.spec import StrictModel


class PerceiverVisionConfig(StrictModel):
    """Patch embedding -> MLP projector -> perceiver resampler -> tau modulator -> block."""

    patch_size: PositiveInt = Field(16, description="conv patch side; must divide image_size")
    num_queries: PositiveInt = Field(16, description="N_v learnable resampler queries")
    num_state_tokens: PositiveInt = Field(4, description="N_s tokens from the state expander")
    num_heads: PositiveInt = Field(4, description="attention heads (must divide d_model)")
    ffn_mult: PositiveInt = Field(4, description="FFN width multiple")
    dropout: float = Field(0.0, ge=0, lt=1)
    theta_t_init: float = Field(0.0, description="initial log-scale gate theta_t on tau")
    theta_mod_init: float = Field(0.0, description="initial log-scale gate theta_mod on FiLM")
