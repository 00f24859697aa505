"""``SigmaPolicy`` for LeRobot: sigma_core's SigmaPolicy behind LeRobot's policy interface."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from lerobot.policies.pretrained import PreTrainedPolicy
from torch import Tensor

from lerobot_policy_sigma.configuration_sigma import IMAGE_PREFIX, SigmaConfig


class SigmaPolicy(PreTrainedPolicy):
    """A Sigma model (vision, intent with memory, τ, residual heads over a base) for LeRobot.

    * ``forward(batch)``: the spec's stage objective (stage ``base``: TRAF + L_fuse on
      the τ = 0 path; stage ``sigma``: TRAF of ``a_base + Δa`` + the ramped TSAC
      terms), on LeRobot's normalised batch with ``action`` (B, T, A) as the target
      trajectory (its first step the vector, its first H_c steps the chunk).
    * ``select_action`` / ``reset``: Sigma's streaming control (memory carried
      across plans, actions served from the plan queue).
    * ``predict_action_chunk``: one plan ``controller(fusion(a_base + s·Δa))`` (B, H_c, A).

    Only the stage's trainable parameters reach the optimizer (``get_optim_params``).
    """

    config_class = SigmaConfig
    name = "sigma"

    def __init__(self, config: SigmaConfig, **kwargs: Any) -> None:
        super().__init__(config)
        config.validate_features()
        from sigma_core import SigmaPolicy as Model
        from sigma_core import get_registry, validate_spec
        from sigma_core.train import LossConfig, StageObjective, configure_stage

        raw = config.raw_spec()
        raw.setdefault("model", {})["dims"] = config.dims()
        spec = validate_spec(raw, get_registry(), source=config.spec or "--policy.spec")
        config.spec_dict = spec.model_dump(mode="json")  # saved with the policy
        self.model = Model(spec)
        configure_stage(self.model, spec.train.stage)
        losses = spec.train.losses or LossConfig()
        self.objective = StageObjective(self.model, spec.train.stage, losses, spec.train.steps)
        self.image_keys = [f"{IMAGE_PREFIX}{c}" for c in spec.model.dims.cameras]
        self._step = 0
        self.reset()

    @classmethod
    def _load_as_safetensor(
        cls, model: SigmaPolicy, model_file: str, map_location: str, strict: bool
    ) -> SigmaPolicy:
        """LeRobot's checkpoints prefix Sigma's tensors with ``model.``; a ``sigma export``
        folder (or a saved sigma_core policy) holds them unprefixed: load either."""
        from safetensors import safe_open
        from safetensors.torch import load_model

        with safe_open(model_file, "pt") as f:
            keys = list(f.keys())
        if keys and not any(k.startswith("model.") for k in keys):
            load_model(model.model, model_file, strict=strict, device=str(map_location or "cpu"))
            return model
        return super()._load_as_safetensor(model, model_file, map_location, strict)

    def get_optim_params(self) -> list[torch.nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def reset(self) -> None:
        self.model.reset(self.config.n_action_steps)

    def sigma_batch(self, batch: dict[str, Any]) -> Any:
        """LeRobot's (normalised) batch as a :class:`sigma_core.SigmaBatch`."""
        from sigma_core import ActionSet, SigmaBatch

        size = self.model.dims.image_size
        images = []
        for key in self.image_keys:
            x = batch[key]
            if x.ndim == 5:  # (B, n_obs, 3, H, W): the latest observation
                x = x[:, -1]
            if x.shape[-1] != size or x.shape[-2] != size:
                x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
            images.append(x)
        state = batch["observation.state"]
        if state.ndim == 3:
            state = state[:, -1]
        texts = batch.get("task") or [""] * state.shape[0]
        if isinstance(texts, str):
            texts = [texts] * state.shape[0]
        targets = None
        a = batch.get("action")
        if isinstance(a, Tensor) and a.ndim == 3:  # training: the (B, T, A) trajectory
            targets = ActionSet(a[:, 0], a[:, : self.model.dims.chunk_horizon], a)
        frames = torch.stack(images, dim=1)[:, :, None]  # (B, C, F=1, 3, P, P)
        return SigmaBatch(frames, state, list(texts), targets=targets)

    def forward(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Any]]:
        loss, row = self.objective([self.sigma_batch(batch)], self._step)
        self._step += 1
        return loss, row

    @torch.no_grad()
    def predict_action_chunk(self, batch: dict[str, Tensor], **kwargs: Any) -> Tensor:
        self.eval()
        return self.model.act(self.sigma_batch(batch))[0]

    @torch.no_grad()
    def select_action(self, batch: dict[str, Tensor], **kwargs: Any) -> Tensor:
        self.eval()
        return self.model.step(self.sigma_batch(batch))
