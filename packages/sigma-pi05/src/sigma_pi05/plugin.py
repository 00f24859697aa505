"""Entry point of sigma-vla-pi05 (no torch, no LeRobot import until a component is built)."""

from __future__ import annotations

from sigma_core import RegisterFn, hookimpl
from sigma_pi05 import config as c


@hookimpl
def sigma_register_components(register: RegisterFn) -> None:
    register(
        kind="base_policy", name="pi05", config=c.Pi05BaseConfig, impl="sigma_pi05.base:Pi05Base"
    )
    register(
        kind="backbone",
        name="pi05",
        config=c.Pi05BackboneConfig,
        impl="sigma_pi05.backbone:Pi05Backbone",
    )
    register(
        kind="vision",
        name="pi05-siglip",
        config=c.Pi05VisionConfig,
        impl="sigma_pi05.vision:Pi05Vision",
    )
