"""Entry point of sigma-vla-vision: registers the vision components (no torch here)."""

from __future__ import annotations

from sigma_core import RegisterFn, hookimpl
from sigma_vision.config import PerceiverVisionConfig, TowerVisionConfig


@hookimpl
def sigma_register_components(register: RegisterFn) -> None:
    for name, config, impl in (
        ("perceiver", PerceiverVisionConfig, "perceiver:PerceiverVision"),
        ("tower", TowerVisionConfig, "tower:TowerVision"),  # needs the extra [tower]
    ):
        register(kind="vision", name=name, config=config, impl=f"sigma_vision.{impl}")
