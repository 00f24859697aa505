"""``vision: pi05-siglip``: π0.5's SigLIP tower feeding the paper's resampler stack."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sigma_core import Dims, register_pretrained
from sigma_pi05.config import Pi05VisionConfig
from sigma_pi05.loading import shared_pi05
from sigma_vision.tower import TowerVision


class Pi05Vision(TowerVision):
    """:class:`~sigma_vision.tower.TowerVision` on π0.5's own SigLIP tower (shared, frozen).

    ``X = SigLIP_π0.5(norm(resize(image))) + e_cam + e_frame``, then projector,
    resampler, τ modulator and block as in ``tower``. The tower is the one inside
    the loaded π0.5 (one copy with the base policy and backbone); checkpoints
    reference it by path and sha256.
    """

    name = "pi05-siglip"
    config_class = Pi05VisionConfig

    def __init__(self, config: Pi05VisionConfig, dims: Dims) -> None:
        loaded = shared_pi05(config, dims)
        super().__init__(config, dims, tower=loaded.vision_tower)
        trainable = [f"tower.{n}" for n, p in self.tower.named_parameters() if p.requires_grad]
        register_pretrained(self, "tower", loaded.record, trainable)

    @classmethod
    def contract_config(cls, workdir: Path | None = None, dims: Dims | None = None) -> Any:
        """A shrunken π0.5 saved under ``workdir`` (offline)."""
        from sigma_pi05.testing import contract_source

        return Pi05VisionConfig(**contract_source(workdir, dims))
