"""Vision workspace fed by a backbone's own vision tower (e.g. pi0.5's SigLIP)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sigma_core import SigmaUserError, is_internal_error, register_pretrained, source_record
from sigma_vision.config import TowerVisionConfig
from sigma_vision.perceiver import ResamplerVision


class TowerVision(ResamplerVision):
    """Patch features from a frozen transformers vision tower, then the paper's stack.

    Per camera c and frame f: ``X = Tower(norm(resize(image))) + e_cam[c] + e_frame[f]``
    where ``Tower`` returns its last hidden states (B, N, W_v) (SigLIP: no CLS
    token), ``resize`` is bilinear to the tower's input size and ``norm`` maps
    [0, 1] to the tower's mean/std (SigLIP: 0.5 / 0.5). Then the
    :class:`ResamplerVision` stack (projector W_v -> D, resampler, modulator, block).
    The tower is frozen by default and run without gradient; set
    ``freeze_tower: false`` to fine-tune it. :meth:`from_tower` wraps a tower
    module already in memory (e.g. the one inside a loaded pi0.5).
    """

    name = "tower"
    config_class = TowerVisionConfig

    def __init__(self, config: TowerVisionConfig, dims: Any, tower: nn.Module | None = None):
        # read by init_patch_encoder during super().__init__; a plain attribute, since
        # nn.Module cannot register a submodule before its own __init__ ran
        object.__setattr__(self, "_given_tower", tower)
        super().__init__(config, dims)

    @classmethod
    def from_tower(cls, tower: nn.Module, config: TowerVisionConfig, dims: Any) -> TowerVision:
        """Use ``tower`` (a module returning ``last_hidden_state``) instead of loading one."""
        return cls(config, dims, tower=tower)

    def init_patch_encoder(self) -> int:
        cfg, dims = self.config, self.dims
        tower = self._given_tower if self._given_tower is not None else load_tower(cfg)
        self._pretrained_record = (
            source_record(cfg.path) if self._given_tower is None and cfg.path else None
        )
        del self._given_tower
        tower_cfg = getattr(tower, "config", None)
        self.tower_size = int(getattr(tower_cfg, "image_size", None) or cfg.tower_image_size)
        width = int(getattr(tower_cfg, "hidden_size", None) or cfg.tower_width)
        self.tower = tower
        if cfg.freeze_tower:
            self.tower.requires_grad_(False)
        if self._pretrained_record is not None:
            # loaded from a path: checkpoints reference it instead of copying it
            trainable = [f"tower.{n}" for n, p in tower.named_parameters() if p.requires_grad]
            register_pretrained(self, "tower", self._pretrained_record, trainable)
        self.camera_embed = nn.Parameter(torch.randn(len(dims.cameras), width) * 0.02)
        self.frame_embed = nn.Parameter(torch.randn(dims.frame_history, width) * 0.02)
        return width

    def patch_features(self, images: Tensor, tau: Tensor | None = None) -> Tensor:
        b, c, f = images.shape[:3]
        x = images.flatten(0, 2)
        if x.shape[-1] != self.tower_size:
            x = F.interpolate(x, size=(self.tower_size, self.tower_size), mode="bilinear")
        dtype = next(self.tower.parameters()).dtype
        x = ((x - 0.5) / 0.5).to(dtype)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.config.freeze_tower):
            feats = self.tower(pixel_values=x).last_hidden_state.float()
        feats = feats.unflatten(0, (b, c, f))  # (B, C, F, N, W_v)
        feats = feats + self.frame_embed[:, None] + self.camera_embed[:, None, None]
        return feats.flatten(1, 3)


def load_tower(cfg: TowerVisionConfig) -> nn.Module:
    """The tower named by ``cfg.path`` (+ ``attribute``), or a tiny random SigLIP."""
    if cfg.path is None:
        from transformers import SiglipVisionConfig, SiglipVisionModel

        if cfg.tower_image_size % cfg.tower_patch_size:
            raise ValueError("vision.tower_patch_size must divide vision.tower_image_size")
        return SiglipVisionModel(
            SiglipVisionConfig(
                hidden_size=cfg.tower_width,
                intermediate_size=4 * cfg.tower_width,
                num_hidden_layers=cfg.tower_layers,
                num_attention_heads=cfg.tower_heads,
                image_size=cfg.tower_image_size,
                patch_size=cfg.tower_patch_size,
            )
        )
    from pathlib import Path

    from transformers import AutoModel

    local = Path(cfg.path).expanduser().exists()
    try:
        model = AutoModel.from_pretrained(
            cfg.path, trust_remote_code=cfg.trust_remote_code, local_files_only=local
        )
    except Exception as e:
        if is_internal_error(e):
            raise
        raise SigmaUserError(
            f"vision.path {cfg.path!r}: cannot load a transformers vision model: "
            f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"
        ) from e
    if cfg.attribute:
        if not hasattr(model, cfg.attribute):
            raise SigmaUserError(f"vision.attribute: the model has no {cfg.attribute!r}")
        return getattr(model, cfg.attribute)
    if hasattr(model.config, "vision_config"):
        # a full model (SiglipModel, CLIPModel, PaliGemma, ...): take its vision tower,
        # whose forward needs only pixel_values
        for name in VISION_ATTRIBUTES:
            if isinstance(getattr(model, name, None), nn.Module):
                return getattr(model, name)
        raise SigmaUserError(
            f"vision.path {cfg.path!r}: a {type(model).__name__} with no vision tower among "
            f"{', '.join(VISION_ATTRIBUTES)}; name it with vision.attribute"
        )
    return model


#: Attribute names of the vision tower inside full multimodal transformers models.
VISION_ATTRIBUTES = ("vision_model", "vision_tower", "visual")
