"""Test support: small LeRobot policies and datasets on disk, built from configs (offline).

The contract kit (``LeRobotBase.contract_config``) and tests use it; no production
module imports it at module level (an import-linter contract and a test check).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sigma_core import Dims
from sigma_lerobot.schema import lerobot_features as features


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


def small_diffusion_config(dims: Dims, **overrides: Any) -> Any:
    """A diffusion-policy config at ``dims``: a 2-level U-Net of width 32, 5 DDIM steps."""
    from lerobot.policies.diffusion.configuration_diffusion import DiffusionConfig

    inputs, outputs = features(dims)
    horizon = max(16, -(-dims.horizon // 4) * 4)  # a multiple of 2 ** len(down_dims)
    kwargs: dict[str, Any] = {
        "input_features": inputs,
        "output_features": outputs,
        "n_obs_steps": 1,
        "horizon": horizon,
        "n_action_steps": horizon,
        "drop_n_last_frames": 0,
        "pretrained_backbone_weights": None,
        "use_group_norm": True,
        "spatial_softmax_num_keypoints": 8,
        "down_dims": (32, 64),
        "kernel_size": 3,
        "n_groups": 8,
        "diffusion_step_embed_dim": 32,
        "noise_scheduler_type": "DDIM",
        "num_inference_steps": 5,
        "device": "cpu",
    }
    return DiffusionConfig(**(kwargs | overrides))


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


def write_random_walk_dataset(
    root: str | Path,
    lengths: list[int],
    repo_id: str = "sim/so101",
    task: str = "pick up the red cube",
    size: int | tuple[int, int] = 32,
) -> Path:
    """A LeRobot v3 dataset written by LeRobot's own writer: random-walk SO-101 episodes.

    Actions are Gaussian random walks (degrees), the state is the action + 0.5,
    cameras ``up`` and ``side`` are noise images (``side`` the flipped ``up``) of
    ``size`` (a side, or (height, width)), stored as images (lossless); seeded, so
    the same call writes the same dataset.
    """
    import numpy as np
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from sigma_lerobot.schema import FPS, ROBOT_TYPE, so101_features

    root = Path(root)
    hw = (size, size) if isinstance(size, int) else tuple(size)
    feats = so101_features({"up": hw, "side": hw}, use_videos=False)
    ds = LeRobotDataset.create(
        repo_id, fps=FPS, root=root, robot_type=ROBOT_TYPE, features=feats, use_videos=False
    )
    rng = np.random.default_rng(0)
    for n in lengths:
        act = np.cumsum(rng.normal(0, 2, (n, 6)), 0).astype(np.float32)
        for t in range(n):
            img = rng.integers(0, 256, (*hw, 3), dtype=np.uint8)
            frame = {"task": task, "action": act[t], "observation.state": act[t] + 0.5}
            frame |= {"observation.images.up": img, "observation.images.side": img[::-1]}
            ds.add_frame(frame)
        ds.save_episode()
    ds.finalize()
    return root
