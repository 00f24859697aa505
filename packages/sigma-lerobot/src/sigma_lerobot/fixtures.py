"""Small LeRobot policies on disk, built from configs (contract kit and tests, offline)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sigma_core import Dims
from sigma_lerobot.base import IMAGE_PREFIX


def features(dims: Dims) -> tuple[dict[str, Any], dict[str, Any]]:
    """LeRobot input/output features at ``dims`` (cameras as observation.images.<camera>)."""
    from lerobot.configs.types import FeatureType, PolicyFeature

    p = dims.image_size
    inputs = {
        f"{IMAGE_PREFIX}{cam}": PolicyFeature(type=FeatureType.VISUAL, shape=(3, p, p))
        for cam in dims.cameras
    }
    inputs["observation.state"] = PolicyFeature(type=FeatureType.STATE, shape=(dims.state_dim,))
    outputs = {"action": PolicyFeature(type=FeatureType.ACTION, shape=(dims.action_dim,))}
    return inputs, outputs


def small_act_config(dims: Dims, **overrides: Any) -> Any:
    """An ACT config at ``dims``: width 32, one layer each, no ImageNet download."""
    from lerobot.policies.act.configuration_act import ACTConfig

    inputs, outputs = features(dims)
    kwargs: dict[str, Any] = {
        "input_features": inputs,
        "output_features": outputs,
        "chunk_size": max(dims.horizon, 16),
        "n_action_steps": 1,
        "pretrained_backbone_weights": None,
        "dim_model": 32,
        "n_heads": 2,
        "dim_feedforward": 64,
        "n_encoder_layers": 1,
        "n_decoder_layers": 1,
        "n_vae_encoder_layers": 1,
        "latent_dim": 8,
        "device": "cpu",
    }
    return ACTConfig(**(kwargs | overrides))


def save_small_act(directory: str | Path, dims: Dims, seed: int = 0) -> Path:
    """Save a random small ACT policy as LeRobot saves policies (config.json + weights)."""
    import torch
    from lerobot.policies.act.modeling_act import ACTPolicy

    directory = Path(directory)
    if not (directory / "model.safetensors").is_file():
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            ACTPolicy(small_act_config(dims)).save_pretrained(directory)
    return directory
