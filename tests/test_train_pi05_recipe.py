"""configs/sigma-pi05.yaml's training recipe, shrunk to CPU size, runs end to end.

Everything the paper's single-GPU setting switches on is kept: a frozen NF4 4-bit
backbone loaded from a local directory, LoRA r=16 on q/k/v/o, gradient
checkpointing, bf16 autocast, batch 4 x accumulation 4, stage sigma. Only the
widths shrink and the weights are a tiny random Gemma saved by the test.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from sigma_core import get_registry, validate_spec
from sigma_core.testing import write_synthetic_shards
from sigma_core.train import Trainer

REPO = Path(__file__).resolve().parents[1]
SIZE = 32

bnb = pytest.importorskip("bitsandbytes")


def test_sigma_pi05_recipe_trains_lora_on_a_frozen_4bit_base(tmp_path):
    from sigma_intent.backbones import save_tiny_model

    raw = yaml.safe_load((REPO / "configs" / "sigma-pi05.yaml").read_text())
    assert (raw["train"]["grad_accum"], raw["data"]["batch_size"], raw["train"]["steps"]) == (
        4,
        4,
        300,
    )
    assert raw["model"]["backbone"]["load_in_4bit"] and raw["train"]["precision"] == "bf16"
    assert raw["model"]["backbone"]["lora"]["r"] == 16
    assert raw["data"]["run_length"] == 4  # the memory unrolled over runs of 4 windows
    assert raw["train"]["allow_random_base"]  # no trained base until the pi0.5 bridge
    raw["model"]["dims"] |= {"d_model": 64, "image_size": SIZE}
    raw["model"]["vision"] = {"type": "tower", "num_queries": 8}  # tiny random SigLIP
    raw["model"]["backbone"]["path"] = str(save_tiny_model())
    raw["model"]["query"]["num_queries"] = 8
    raw["model"]["trajectory"] |= {"width": 32, "num_heads": 4}
    spec = validate_spec(raw, get_registry())

    data = write_synthetic_shards(
        tmp_path / "shards", spec.model.dims, episodes=3, frames=64, val_fraction=0
    )
    trainer = Trainer(spec, data, tmp_path / "run", steps=2)
    assert trainer.autocast_dtype == torch.bfloat16
    backbone = trainer.policy.backbone.model
    assert backbone.is_gradient_checkpointing
    quantized = {n: m for n, m in backbone.named_modules() if isinstance(m, bnb.nn.Linear4bit)}
    assert quantized and all(m.weight.quant_type == "nf4" for m in quantized.values())
    packed = {n: m.weight.data.clone() for n, m in quantized.items()}
    lora_b = {n: p.detach().clone() for n, p in backbone.named_parameters() if "lora_B" in n}

    result = trainer.train()
    rows = [json.loads(r) for r in (tmp_path / "run" / "metrics.jsonl").open()]
    assert [r["step"] for r in rows] == [1, 2] and all(np.isfinite(r["loss"]) for r in rows)
    assert all(torch.equal(m.weight.data, packed[n]) for n, m in quantized.items())  # frozen
    now = dict(backbone.named_parameters())
    assert any(not torch.equal(now[n], v) for n, v in lora_b.items())  # LoRA trained
    assert (result.checkpoint / "adapter_model.safetensors").is_file()
