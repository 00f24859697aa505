"""Configs of sigma-vla-lerobot's components (pydantic only: imported without torch)."""

from __future__ import annotations

from pydantic import Field

from sigma_core import StrictModel


class LeRobotBaseConfig(StrictModel):
    """``base_policy: lerobot``: any pretrained LeRobot policy directory as the frozen base."""

    path: str = Field(
        description="a LeRobot policy directory (config.json + model.safetensors, e.g. a"
        " lerobot-train checkpoint's pretrained_model/)"
    )
    camera_map: dict[str, str] = Field(
        default_factory=dict,
        description="spec camera -> the policy's image key (default observation.images.<camera>)",
    )
    noise_seed: int = Field(0, description="seed around each call (stochastic policies)")
