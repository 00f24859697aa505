"""configs/sigma-pi05.yaml's training recipe, shrunk to CPU size, runs end to end on π0.5.

Everything the paper's single-GPU setting switches on is kept: LeRobot's PI05Policy
as the frozen base (loaded from a local directory, bf16), its language model as the
backbone with LoRA r=16 on q/k/v/o and gradient checkpointing, its SigLIP as the
vision tower, one shared π0.5, bf16 autocast, batch 4 x accumulation 4, stage sigma.
Only the widths shrink: the π0.5 is LeRobot's code at a reduced size, saved by the test.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import yaml
from safetensors import safe_open
from typer.testing import CliRunner

from sigma_core import get_registry, validate_spec
from sigma_core.testing import write_synthetic_shards
from sigma_core.train import Trainer

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "configs" / "sigma-pi05.yaml"


def test_the_recipe_validates_offline_without_weights():
    from sigma_cli.main import app

    result = CliRunner().invoke(app, ["build", "--dry-run", str(RECIPE)])
    assert result.exit_code == 0, result.output


def test_sigma_pi05_recipe_trains_lora_on_the_frozen_shared_pi05(tmp_path):
    from sigma_pi05.testing import contract_source

    raw = yaml.safe_load(RECIPE.read_text())
    assert (raw["train"]["grad_accum"], raw["data"]["batch_size"], raw["train"]["steps"]) == (
        4,
        4,
        300,
    )
    assert raw["train"]["precision"] == "bf16" and raw["data"]["run_length"] == 4
    assert raw["model"]["backbone"]["lora"]["r"] == 16
    assert raw["model"]["backbone"]["gradient_checkpointing"]
    slots = (raw["model"]["vision"], raw["model"]["backbone"], raw["base_policy"])
    assert [s["type"] for s in slots] == ["pi05-siglip", "pi05", "pi05"]
    assert len({(s["path"], s["tokenizer"], s["dtype"]) for s in slots}) == 1  # one π0.5
    assert "allow_random_init" not in json.dumps(raw) and "allow_random_base" not in raw["train"]

    raw["model"]["dims"] |= {"d_model": 64, "image_size": 32}
    source = contract_source(tmp_path / "pi05", validate_spec(raw, get_registry()).model.dims)
    shrink = source.pop("shrink").model_dump()
    for slot in slots:
        slot |= source | {"shrink": shrink}
    raw["base_policy"]["camera_map"] = {}
    raw["model"]["vision"]["num_queries"] = 8
    raw["model"]["query"]["num_queries"] = 8
    raw["model"]["trajectory"] |= {"width": 32, "num_heads": 4}
    spec = validate_spec(raw, get_registry())

    data = write_synthetic_shards(
        tmp_path / "shards", spec.model.dims, episodes=3, frames=64, val_fraction=0
    )
    trainer = Trainer(spec, data, tmp_path / "run", steps=2)
    assert trainer.autocast_dtype == torch.bfloat16
    policy = trainer.policy
    pi05 = policy.base_policy.pi05
    assert policy.vision.tower is pi05.model.paligemma_with_expert.paligemma.model.vision_tower
    frozen = {n: p.detach().clone() for n, p in pi05.named_parameters() if "lora_" not in n}
    lora_b = {n: p.detach().clone() for n, p in policy.named_parameters() if "lora_B" in n}
    assert lora_b and policy.backbone.model.base_model.model.is_gradient_checkpointing

    result = trainer.train()
    rows = [json.loads(r) for r in (tmp_path / "run" / "metrics.jsonl").open()]
    assert [r["step"] for r in rows] == [1, 2] and all(np.isfinite(r["loss"]) for r in rows)
    now = dict(policy.named_parameters())
    assert any(not torch.equal(now[n], v) for n, v in lora_b.items())  # LoRA trained
    pi05_now = dict(pi05.named_parameters())
    assert all(torch.equal(pi05_now[n], v) for n, v in frozen.items())  # π0.5 did not move
    assert (result.checkpoint / "adapter_model.safetensors").is_file()
    with safe_open(str(tmp_path / "run" / "policy" / "model.safetensors"), "pt") as f:
        saved = list(f.keys())
    assert not [k for k in saved if k.startswith(("base_policy.policy.", "vision.tower."))]
