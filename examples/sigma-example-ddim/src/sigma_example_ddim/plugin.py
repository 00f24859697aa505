"""Entry point: register the head. Keep this module free of torch imports."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt

from sigma_core import StrictModel, hookimpl


class DdimConfig(StrictModel):
    """Parameters of the DDIM trajectory head (unknown keys are rejected)."""

    train_timesteps: PositiveInt = Field(100, description="diffusion steps N of the DDPM")
    sample_steps: PositiveInt = Field(10, description="DDIM steps when sampling (<= N)")
    beta_start: float = Field(1e-4, gt=0, lt=1, description="linear beta schedule, first")
    beta_end: float = Field(0.02, gt=0, lt=1, description="linear beta schedule, last")
    width: PositiveInt = Field(128, description="hidden width of the denoiser")
    prediction: Literal["sample", "epsilon"] = Field(
        "sample",
        description="what the denoiser predicts: the clean trajectory x_0 (learns fast on"
        " small data) or the noise ε (the original DDPM)",
    )


@hookimpl
def sigma_register_components(register):
    register(
        kind="action.trajectory",
        name="ddim",
        config=DdimConfig,
        impl="sigma_example_ddim.heads:DdimTrajectory",  # imported only when built
    )
