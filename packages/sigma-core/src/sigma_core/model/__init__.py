"""The assembled model: :class:`SigmaPolicy` (spec -> components, the telepathy forward,
streaming inference) and the format it is saved in."""

from sigma_core.model.policy import (
    SigmaPolicy,
    build_component,
    build_policy,
    parameter_counts,
    slot_seed,
)

__all__ = ["SigmaPolicy", "build_component", "build_policy", "parameter_counts", "slot_seed"]
