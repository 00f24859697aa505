"""Configs of the components that ship with sigma-vla-core (pydantic only, no torch)."""

from __future__ import annotations

from pydantic import Field

from sigma_core.config import StrictModel


class InternalBaseConfig(StrictModel):
    """No parameters: the base is the model's own tau = 0 path."""


class CheckpointBaseConfig(StrictModel):
    """A frozen saved policy (e.g. the result of stage ``base``) supplies a_base."""

    path: str = Field(
        description="directory written by save_pretrained / sigma train, or the hub id of one"
    )
    strict_versions: bool = Field(True, description="refuse a checkpoint of other versions")
