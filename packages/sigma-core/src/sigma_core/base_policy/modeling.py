"""Built-in base-policy components: ``internal`` (the tau = 0 path) and ``checkpoint``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sigma_core.base_policy.config import CheckpointBaseConfig, InternalBaseConfig
from sigma_core.components import BasePolicy
from sigma_core.config import Dims
from sigma_core.data.dims import DATA_DIMS, check_dims
from sigma_core.model.policy import SigmaPolicy, build_policy
from sigma_core.plugins.registry import get_registry
from sigma_core.spec import validate_spec
from sigma_core.types import ActionSet, SigmaBatch


class InternalBasePolicy(BasePolicy):
    """a_base = the model's own action path with tau = 0 (c_act_base, V_base).

    Returns ``None`` so that :class:`~sigma_core.model.policy.SigmaPolicy` uses the
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
    telepathy heads change only the model being trained).

    The base is an ordinary submodule, so ``.to(device)``, dtype casts and
    ``eval()`` reach it; its parameters are frozen (``requires_grad=False``), so no
    optimizer or stage switch trains them, and a state-dict hook leaves them out of
    the owner's ``state_dict`` (a load keeps the base's own tensors): its weights
    stay in their own checkpoint, named by ``path``, and are not saved again.
    """

    name = "checkpoint"
    config_class = CheckpointBaseConfig

    def __init__(self, config: CheckpointBaseConfig, dims: Dims) -> None:
        super().__init__(config, dims)
        base = SigmaPolicy.from_pretrained(config.path, strict_versions=config.strict_versions)
        have = {k: getattr(base.dims, k) for k in DATA_DIMS}
        check_dims(dims, have, f"base_policy.path {config.path}", what="base")
        self.base = base.requires_grad_(False).eval()
        self.register_state_dict_post_hook(_drop_base)
        self.register_load_state_dict_pre_hook(_keep_base)

    def train(self, mode: bool = True) -> CheckpointBasePolicy:
        super().train(mode)
        self.base.eval()  # the base stays in eval mode (no dropout)
        return self

    @torch.no_grad()
    def forward(self, batch: SigmaBatch) -> ActionSet | None:
        return self.base(batch, telepathy=False).base

    @classmethod
    def contract_config(
        cls, workdir: Path | None = None, dims: Dims | None = None
    ) -> CheckpointBaseConfig:
        """A freshly built policy at the kit's ``dims``, saved under ``workdir``."""
        if workdir is None or dims is None:
            raise ValueError("base_policy: checkpoint needs a workdir and dims to build from")
        path = Path(workdir) / "base-policy"
        if not path.is_dir():
            spec = validate_spec({"model": {"dims": dims.model_dump()}}, get_registry())
            build_policy(spec).save_pretrained(path)
        return CheckpointBaseConfig(path=str(path))


def _drop_base(
    module: nn.Module, state: dict[str, Any], prefix: str, local_metadata: Mapping[str, Any]
) -> None:
    """state_dict post-hook: the frozen base's tensors belong to its own checkpoint."""
    for key in [k for k in state if k.startswith(f"{prefix}base.")]:
        del state[key]


def _keep_base(module: nn.Module, state: dict[str, Any], prefix: str, *_: Any) -> None:
    """load_state_dict pre-hook: a checkpoint without the base keeps the base as loaded."""
    own = module.base.state_dict(prefix=f"{prefix}base.", keep_vars=True)
    for key, tensor in own.items():
        state.setdefault(key, tensor)
