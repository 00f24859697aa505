"""Entry point: register the memory. Keep this module free of torch imports."""

from __future__ import annotations

from pydantic import Field

from sigma_core import StrictModel, hookimpl


class GruMemoryConfig(StrictModel):
    """Parameters of the GRU memory (unknown keys are rejected)."""

    input_norm: bool = Field(True, description="LayerNorm on z_pool before the GRU cell")


@hookimpl
def sigma_register_components(register):
    register(
        kind="memory",
        name="gru",
        config=GruMemoryConfig,
        impl="sigma_example_gru.memory:GruMemory",
    )
