"""Configs of the components that ship with sigma-vla-core (pydantic only, no torch)."""

from __future__ import annotations

from sigma_core.spec import StrictModel


class InternalBaseConfig(StrictModel):
    """No parameters: the base is the model's own tau = 0 path."""
