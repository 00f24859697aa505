"""Entry point of sigma-vla-intent: backbones, memories and the intent workspace (no torch)."""

from __future__ import annotations

from sigma_core import RegisterFn, hookimpl
from sigma_intent import config as c


@hookimpl
def sigma_register_components(register: RegisterFn) -> None:
    for name, cfg, cls in (
        ("tiny", c.TinyBackboneConfig, "TinyBackbone"),
        ("hf", c.HfBackboneConfig, "HfBackbone"),
    ):
        register(kind="backbone", name=name, config=cfg, impl=f"sigma_intent.backbones:{cls}")
    for name, cfg, cls in (
        ("gated", c.GatedMemoryConfig, "GatedMemory"),
        ("none", c.NoMemoryConfig, "NoMemory"),
        ("ema", c.EmaMemoryConfig, "EmaMemory"),
    ):
        register(kind="memory", name=name, config=cfg, impl=f"sigma_intent.memory:{cls}")
    register(
        kind="intent",
        name="sigma",
        config=c.SigmaIntentConfig,
        impl="sigma_intent.intent:SigmaIntent",
    )
