"""Opt-in (``pytest -m slow``): configs/sigma-pi05.yaml at π0.5's real architecture.

Random init (no download): LeRobot's pi05_base architecture, 4.1 B parameters,
~18 GB of RAM and a few minutes on CPU. Checks the sizes, one shared copy, that
π0.5's chunk and Sigma's act run, and that a checkpoint holds no π0.5 tensor.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from safetensors import safe_open

from sigma_core import SigmaPolicy, get_registry, validate_spec
from sigma_core.testing import example_batch

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.slow
def test_the_recipe_at_full_size(tmp_path):
    from transformers import ByT5Tokenizer

    torch.set_num_threads(1)
    ByT5Tokenizer().save_pretrained(tmp_path / "tok")
    raw = yaml.safe_load((REPO / "configs" / "sigma-pi05.yaml").read_text())
    source = {"path": None, "allow_random_init": True, "tokenizer": str(tmp_path / "tok")}
    for slot in (raw["model"]["vision"], raw["model"]["backbone"], raw["base_policy"]):
        slot |= source | {"dtype": "float32"}
    raw["base_policy"].pop("camera_map")
    policy = SigmaPolicy(validate_spec(raw, get_registry())).eval()
    pi05 = policy.base_policy.pi05
    assert 4.1e9 < sum(p.numel() for p in pi05.parameters()) < 4.2e9
    assert policy.vision.tower is pi05.model.paligemma_with_expert.paligemma.model.vision_tower
    batch = example_batch(policy.dims, batch_size=1)
    with torch.no_grad():
        chunk = policy.base_policy.chunk(batch)
        plan, _ = policy.act(batch)
    assert chunk.shape == (1, 50, 6) and torch.isfinite(plan).all()
    policy.save_pretrained(tmp_path / "ckpt")
    with safe_open(str(tmp_path / "ckpt" / "model.safetensors"), "pt") as f:
        saved = set(f.keys())
    assert not [k for k in saved if k.startswith(("base_policy.policy.", "vision.tower."))]
