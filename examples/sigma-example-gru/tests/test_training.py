"""Stage sigma trains the memory on a trained base, then the policy reloads from its wheel."""

import json

import torch

from sigma_core import SigmaPolicy, get_registry, validate_spec
from sigma_core.testing import CONTRACT_DIMS, write_synthetic_shards
from sigma_core.train import Trainer

DIMS = CONTRACT_DIMS.model_dump()
TRAIN = {"steps": 4, "lr": 3e-3, "warmup_steps": 1}


def test_stage_sigma_trains_the_memory_on_a_trained_base(tmp_path):
    shards = write_synthetic_shards(tmp_path / "shards", CONTRACT_DIMS, episodes=4, frames=24)
    registry = get_registry()
    # 1. stage base: the tau = 0 path (the memory is not part of it)
    base = validate_spec(
        {"model": {"dims": DIMS}, "data": {"batch_size": 4}, "train": {"stage": "base", **TRAIN}},
        registry,
    )
    Trainer(base, shards, tmp_path / "base", checkpoint_every=4).train()
    # 2. stage sigma on that base, with this plugin's memory
    spec = validate_spec(
        {
            "model": {"dims": DIMS, "memory": {"type": "gru"}},
            "base_policy": {"type": "checkpoint", "path": str(tmp_path / "base" / "policy")},
            "data": {"batch_size": 4, "run_length": 2},  # the memory is unrolled over 2 windows
            "train": {"stage": "sigma", **TRAIN},
        },
        registry,
    )
    trainer = Trainer(spec, shards, tmp_path / "sigma", checkpoint_every=4)
    before = {n: p.detach().clone() for n, p in trainer.policy.memory.named_parameters()}
    assert all(p.requires_grad for p in trainer.policy.memory.parameters())
    trainer.train()
    moved = [
        n for n, p in trainer.policy.memory.named_parameters() if not torch.equal(p, before[n])
    ]
    assert sorted(moved) == sorted(before)  # every tensor of the memory was trained
    meta = json.loads((tmp_path / "sigma" / "policy" / "sigma.json").read_text())
    assert meta["components"]["model.memory"]["distribution"] == "sigma-example-gru"
    reloaded = SigmaPolicy.from_pretrained(tmp_path / "sigma" / "policy")
    assert reloaded.memory.name == "gru"
    for name, p in reloaded.memory.state_dict().items():
        assert torch.equal(p, trainer.policy.memory.state_dict()[name])
