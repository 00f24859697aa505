"""Train the head for a few steps inside a real Sigma model, save it, load it back."""

import json

import torch

from sigma_core import SigmaPolicy, get_registry, validate_spec
from sigma_core.testing import CONTRACT_DIMS, write_synthetic_shards
from sigma_core.train import Trainer


def test_stage_base_trains_the_head_on_its_own_loss(tmp_path):
    shards = write_synthetic_shards(tmp_path / "shards", CONTRACT_DIMS, episodes=4, frames=24)
    spec = validate_spec(
        {
            "model": {"dims": CONTRACT_DIMS.model_dump(), "trajectory": {"type": "ddim"}},
            "data": {"batch_size": 4},
            # stage base trains the branches; native = each branch's own loss()
            "train": {
                "stage": "base",
                "steps": 6,
                "lr": 3e-3,
                "warmup_steps": 1,
                "losses": {"base_loss": "native"},
            },
        },
        get_registry(),
    )
    trainer = Trainer(spec, shards, tmp_path / "run", checkpoint_every=6)
    before = {n: p.detach().clone() for n, p in trainer.policy.trajectory.named_parameters()}
    trainer.train()
    moved = [
        n for n, p in trainer.policy.trajectory.named_parameters() if not torch.equal(p, before[n])
    ]
    assert len(moved) == len(before)  # every tensor of the head was trained
    rows = [json.loads(r) for r in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and all(r["L_act"] > 0 for r in rows)
    meta = json.loads((tmp_path / "run" / "policy" / "sigma.json").read_text())
    assert meta["components"]["model.trajectory"]["distribution"] == "sigma-example-ddim"
    reloaded = SigmaPolicy.from_pretrained(tmp_path / "run" / "policy")
    assert reloaded.trajectory.name == "ddim"
