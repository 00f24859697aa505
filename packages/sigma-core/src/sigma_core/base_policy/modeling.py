"""Built-in base-policy components: ``internal`` (the tau = 0 path) and ``checkpoint``."""

from __future__ import annotations

from pathlib import Path

import torch

from sigma_core.base_policy.config import CheckpointBaseConfig, InternalBaseConfig
from sigma_core.components import BasePolicy
from sigma_core.config import Dims
from sigma_core.data.dims import DATA_DIMS, check_dims
from sigma_core.model.policy import SigmaPolicy, build_policy
from sigma_core.plugins.registry import get_registry
from sigma_core.pretrained import local_directory, register_pretrained, source_record
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
    optimizer or stage switch trains them, and they are registered as pretrained
    (:func:`~sigma_core.pretrained.register_pretrained`): its weights stay in their
    own checkpoint, referenced by ``path`` and sha256, and are not saved again.
    """

    name = "checkpoint"
    config_class = CheckpointBaseConfig

    def __init__(self, config: CheckpointBaseConfig, dims: Dims) -> None:
        super().__init__(config, dims)
        local = local_directory(config.path, "base_policy.path")  # a path or a hub id
        base = SigmaPolicy.from_pretrained(local, strict_versions=config.strict_versions)
        have = {k: getattr(base.dims, k) for k in DATA_DIMS}
        check_dims(dims, have, f"base_policy.path {config.path}", what="base")
        self.base = base.requires_grad_(False).eval()
        register_pretrained(self, "base", source_record(config.path, local=local))

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
