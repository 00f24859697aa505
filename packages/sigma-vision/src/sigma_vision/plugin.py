"""Entry point of sigma-vla-vision: registers the vision components (no torch here)."""

from __future__ import annotations

from sigma_core.hookspecs import RegisterFn, hookimpl
from sigma_vision.config import PerceiverVisionConfig


@hookimpl
def sigma_register_components(register: RegisterFn) -> None:
    register(
        kind="vision",
        name="perceiver",
        config=PerceiverVisionConfig,
        impl="sigma_vision.perceiver:PerceiverVision",
    )
