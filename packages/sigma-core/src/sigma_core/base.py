"""Built-in base-policy components."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from sigma_core.components import BasePolicy
from sigma_core.configs import CheckpointBaseConfig, InternalBaseConfig
from sigma_core.errors import SigmaUserError
from sigma_core.spec import Dims
from sigma_core.types import ActionSet, SigmaBatch

#: Dims a base must share with the model it serves (d_model and frame history may differ).
SHARED_DIMS = ("action_dim", "state_dim", "chunk_horizon", "horizon", "cameras", "image_size")


class InternalBasePolicy(BasePolicy):
    """a_base = the model's own action path with tau = 0 (c_act_base, V_base).

    Returns ``None`` so that :class:`~sigma_core.policy.SigmaPolicy` uses the
    batch's external ``base_actions`` when present and its tau = 0 path otherwise.
    """

    name = "internal"
    config_class = InternalBaseConfig

    def forward(self, batch: SigmaBatch) -> ActionSet | None:
        return None


class CheckpointBasePolicy(BasePolicy):
    """a_base = the tau = 0 actions of a frozen saved :class:`SigmaPolicy`.

    ``a_base = base(batch, telepathy=False).base`` under ``no_grad``, so stage
    ``sigma`` learns residuals on top of a base that cannot drift (LoRA and the
    telepathy heads change only the model being trained). The base's weights stay
    in their own checkpoint: they are not registered as parameters of this
    module, so they are neither trained nor saved again.
    """

    name = "checkpoint"
    config_class = CheckpointBaseConfig

    def __init__(self, config: CheckpointBaseConfig, dims: Dims) -> None:
        super().__init__(config, dims)
        from sigma_core.policy import SigmaPolicy

        base = SigmaPolicy.from_pretrained(config.path, strict_versions=config.strict_versions)
        wrong = [
            f"{k} {getattr(base.dims, k)} != {getattr(dims, k)}"
            for k in SHARED_DIMS
            if getattr(base.dims, k) != getattr(dims, k)
        ]
        if wrong:
            raise SigmaUserError(
                f"base_policy.path {config.path}: its dims differ from model.dims: "
                + ", ".join(wrong)
            )
        base.requires_grad_(False).eval()
        self._base = [base]  # a list hides it from nn.Module registration

    @property
    def base(self) -> Any:
        return self._base[0]

    def _apply(self, fn: Callable[..., Any], recurse: bool = True) -> nn.Module:
        self.base._apply(fn, recurse)  # .to(device) / .half() reach the base too
        return super()._apply(fn, recurse)

    def train(self, mode: bool = True) -> CheckpointBasePolicy:
        super().train(mode)
        self.base.eval()  # the base stays in eval mode (no dropout)
        return self

    @torch.no_grad()
    def forward(self, batch: SigmaBatch) -> ActionSet | None:
        return self.base(batch, telepathy=False).base

    @classmethod
    def contract_config(cls) -> CheckpointBaseConfig:
        """A policy at the contract kit's dims, saved once per process."""
        import tempfile

        from sigma_core.policy import build_policy
        from sigma_core.registry import get_registry
        from sigma_core.spec import validate_spec
        from sigma_core.testing import CONTRACT_DIMS

        if "dir" not in _CONTRACT:
            spec = validate_spec({"model": {"dims": CONTRACT_DIMS.model_dump()}}, get_registry())
            _CONTRACT["dir"] = tempfile.mkdtemp(prefix="sigma-base-")
            build_policy(spec).save_pretrained(_CONTRACT["dir"])
        return CheckpointBaseConfig(path=_CONTRACT["dir"])


_CONTRACT: dict[str, str] = {}
