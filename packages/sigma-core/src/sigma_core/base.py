"""Built-in base-policy components."""

from __future__ import annotations

from sigma_core.components import BasePolicy
from sigma_core.configs import InternalBaseConfig
from sigma_core.types import ActionSet, SigmaBatch


class InternalBasePolicy(BasePolicy):
    """a_base = the model's own action path with tau = 0 (c_act_base, V_base).

    Returns ``None`` so that :class:`~sigma_core.policy.SigmaPolicy` uses the
    batch's external ``base_actions`` when present and its tau = 0 path otherwise.
    """

    name = "internal"
    config_class = InternalBaseConfig

    def forward(self, batch: SigmaBatch) -> ActionSet | None:
        return None
