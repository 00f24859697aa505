"""Entry point: register the component. Keep this module free of torch imports."""

from __future__ import annotations

from pydantic import Field, PositiveInt

from sigma_core import StrictModel, hookimpl


class AttentionChunkConfig(StrictModel):
    """Parameters of the chunk-attention head (unknown keys are rejected)."""

    num_heads: PositiveInt = Field(4, description="attention heads (must divide d_model)")


@hookimpl
def sigma_register_components(register):
    register(
        kind="action.chunk",
        name="chunk-attention",
        config=AttentionChunkConfig,
        impl="sigma_example_chunk.heads:AttentionChunk",  # imported only when built
    )
