"""π0.5 through LeRobot's own code (a shrunken architecture built from a config, offline)."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from unittest import mock

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from sigma_core import SigmaBatch, SigmaPolicy, SigmaUserError, get_registry, validate_spec
from sigma_core.testing import (
    CONTRACT_DIMS,
    example_batch,
    planned_actions,
    write_synthetic_shards,
)
from sigma_pi05.base import Pi05Base
from sigma_pi05.config import Pi05BaseConfig, Pi05Shrink, Pi05Source
from sigma_pi05.loading import load_pi05
from sigma_pi05.testing import contract_source, save_shrunken_pi05

D = CONTRACT_DIMS


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> dict:
    return contract_source(tmp_path_factory.mktemp("pi05"), D)


def pi05_spec(source: dict, **extra) -> dict:
    src = {k: (v.model_dump() if hasattr(v, "model_dump") else v) for k, v in source.items()}
    raw = {
        "model": {
            "dims": D.model_dump(),
            "vision": {"type": "pi05-siglip", **src},
            "backbone": {"type": "pi05", **src},
        },
        "base_policy": {"type": "pi05", **src},
    }
    for key, value in extra.items():
        raw[key] = value
    return raw


@pytest.fixture(scope="module")
def policy(source) -> SigmaPolicy:
    torch.manual_seed(0)
    return SigmaPolicy(validate_spec(pi05_spec(source), get_registry())).eval()


def test_one_pi05_in_memory_for_base_backbone_and_vision(policy):
    pi05 = policy.base_policy.pi05
    lm = pi05.model.paligemma_with_expert.paligemma.model.language_model
    assert policy.vision.tower is pi05.model.paligemma_with_expert.paligemma.model.vision_tower
    q_backbone = policy.backbone.model.base_model.model.layers[0].self_attn.q_proj.base_layer
    assert (
        q_backbone.weight.data_ptr() == lm.layers[0].self_attn.q_proj.base_layer.weight.data_ptr()
    )
    ptrs = {p.data_ptr() for p in policy.parameters()}
    assert len(ptrs) == len(list(policy.parameters()))  # parameters() counts shared ones once
    assert sum(1 for _ in pi05.parameters()) < len(ptrs)


def test_the_first_forward_attends_like_every_later_one(source):
    """π0.5's own forward sets the shared language model to eager attention; the backbone
    pass before it (a fresh policy's first forward) must not run another implementation."""
    torch.manual_seed(0)
    fresh = SigmaPolicy(validate_spec(pi05_spec(source), get_registry())).eval()
    batch = example_batch(D, batch_size=1)
    with torch.no_grad():
        first, second = fresh(batch).intent.z_pool, fresh(batch).intent.z_pool
    assert torch.equal(first, second)


def test_checkpoint_holds_no_frozen_pi05_tensor_and_reloads_exactly(policy, tmp_path):
    policy.save_pretrained(tmp_path / "ckpt")
    with safe_open(str(tmp_path / "ckpt" / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
    assert not any(k.startswith(("base_policy.policy.", "vision.tower.")) for k in keys)
    backbone = [k for k in keys if k.startswith("backbone.model.")]
    assert backbone and all("lora_" in k for k in backbone)
    meta = json.loads((tmp_path / "ckpt" / "sigma.json").read_text())
    shas = {record["sha256"] for record in meta["pretrained"].values()}
    assert set(meta["pretrained"]) == {"vision.tower", "backbone.model", "base_policy.policy"}
    assert len(shas) == 1 and len(shas.pop()) == 64
    restored = SigmaPolicy.from_pretrained(tmp_path / "ckpt").eval()
    batch = example_batch(D, batch_size=2)
    assert torch.equal(planned_actions(policy, batch), planned_actions(restored, batch))


def lerobot_chunk(base: Pi05Base, obs: dict, noise: torch.Tensor) -> torch.Tensor:
    """LeRobot's own path: make_pi05_pre_post_processors -> predict_action_chunk -> post."""
    from lerobot.policies.pi05 import processor_pi05
    from lerobot.processor import TokenizerProcessorStep

    stats = {
        key: {s: getattr(base, f"{f}_{s}") for s in ("mean", "std", "q01", "q99", "min", "max")}
        for f, key in (("state", "observation.state"), ("action", "action"))
    }
    step = functools.partial(TokenizerProcessorStep, tokenizer=base.tokenizer)
    with mock.patch.object(processor_pi05, "TokenizerProcessorStep", step):
        pre, post = processor_pi05.make_pi05_pre_post_processors(base.pi05.config, stats)
    return post(base.pi05.predict_action_chunk(pre(obs), noise=noise))


def test_base_actions_are_deterministic_and_equal_lerobots_chunk(policy):
    base = policy.base_policy
    g = torch.Generator().manual_seed(0)
    stats = {
        key: {
            "mean": torch.randn(6, generator=g).tolist(),
            "std": (torch.rand(6, generator=g) + 0.5).tolist(),
            "q01": (-2 - torch.rand(6, generator=g)).tolist(),
            "q99": (2 + torch.rand(6, generator=g)).tolist(),
            "min": [-5.0] * 6,
            "max": [5.0] * 6,
        }
        for key in ("observation.state", "action")
    }
    base.set_data_stats(stats)
    batch = example_batch(D, batch_size=3)
    a = base(batch)
    assert torch.equal(a.trajectory, base(batch).trajectory)  # fixed noise
    # a window's a_base does not depend on the batch it is in
    one = SigmaBatch(batch.images[1:2], batch.state[1:2], list(batch.texts[1:2]))
    torch.testing.assert_close(base(one).trajectory, a.trajectory[1:2])
    raw_state = batch.state * torch.tensor(stats["observation.state"]["std"]) + torch.tensor(
        stats["observation.state"]["mean"]
    )
    obs = {"observation.state": raw_state, "task": list(batch.texts)}
    for i, cam in enumerate(D.cameras):
        obs[f"observation.images.{cam}"] = batch.images[:, i, -1]
    want = lerobot_chunk(base, obs, base.noise(3, torch.device("cpu")))
    want = (want - torch.tensor(stats["action"]["mean"])) / torch.tensor(stats["action"]["std"])
    torch.testing.assert_close(a.trajectory, want[:, : D.horizon])
    torch.testing.assert_close(a.chunk, want[:, : D.chunk_horizon])
    torch.testing.assert_close(a.vector, want[:, 0])


def test_base_policy_bypasses_the_backbones_lora(policy):
    batch = example_batch(D, batch_size=2)
    before = policy.base_policy(batch).trajectory
    lora_b = [p for n, p in policy.backbone.named_parameters() if "lora_B" in n]
    ids, mask = policy.backbone.tokenize(list(batch.texts))
    prefix = torch.randn(2, 3, D.d_model)
    with torch.no_grad():
        hidden = policy.backbone(ids, mask, prefix).hidden
        for p in lora_b:
            p.add_(0.5)
        try:
            assert not torch.allclose(policy.backbone(ids, mask, prefix).hidden, hidden)
            assert torch.equal(policy.base_policy(batch).trajectory, before)
        finally:
            for p in lora_b:
                p.sub_(0.5)


def test_incomplete_weights_are_refused_with_the_path_and_the_fix(source, tmp_path):
    shrink = Pi05Shrink()
    complete = Path(source["path"])
    broken = tmp_path / "broken"
    save_shrunken_pi05(broken, D, shrink)
    state = load_file(str(broken / "model.safetensors"))
    dropped = sorted(state)[:2]
    for key in dropped:
        del state[key]
    save_file(state, str(broken / "model.safetensors"))
    cfg = {"tokenizer": source["tokenizer"], "shrink": shrink}
    with pytest.raises(SigmaUserError, match=rf"{broken}: π0.5 weights did not load \(2 missing"):
        load_pi05(Pi05Source(path=str(broken), **cfg), D)
    # the escape hatch: random init, said out loud, no fingerprint
    loaded = load_pi05(Pi05Source(path=str(broken), allow_random_init=True, **cfg), D)
    assert loaded.record["sha256"] is None
    # another architecture: shapes differ
    other = Pi05Shrink(width=96)
    with pytest.raises(SigmaUserError, match="tensors of another shape"):
        load_pi05(Pi05Source(path=str(complete), tokenizer=source["tokenizer"], shrink=other), D)
    (broken / "model.safetensors").unlink()
    with pytest.raises(SigmaUserError, match=r"no model.safetensors"):
        load_pi05(Pi05Source(path=str(broken), **cfg), D)
    # complete: silent, fingerprinted
    assert len(load_pi05(Pi05Source(path=str(complete), **cfg), D).record["sha256"]) == 64


def test_missing_sources_are_clear_errors(source, tmp_path):
    tok = source["tokenizer"]
    with pytest.raises(SigmaUserError, match="path is required"):
        load_pi05(Pi05Source(tokenizer=tok), D)
    with pytest.raises(SigmaUserError, match="not a LeRobot policy directory"):
        load_pi05(Pi05Source(path=str(tmp_path), tokenizer=tok), D)
    (tmp_path / "act").mkdir()
    (tmp_path / "act" / "config.json").write_text(json.dumps({"type": "act"}))
    with pytest.raises(SigmaUserError, match=r"config.json|not pi05"):
        load_pi05(Pi05Source(path=str(tmp_path / "act"), tokenizer=tok), D)
    hint = r"no such local directory, and no hub download.*hf download lerobot/pi05_base"
    with pytest.raises(SigmaUserError, match=hint):
        load_pi05(Pi05Source(path="nobody/no-such-pi05", tokenizer=tok), D)
    with pytest.raises(SigmaUserError, match=r"tokenizer .*paligemma-3b-pt-224"):
        load_pi05(Pi05Source(path=source["path"], tokenizer=str(tmp_path / "no-tok")), D)


def test_cameras_and_dims_must_match(source):
    src = {**source, "camera_map": {"overhead": "observation.images.nope"}}
    with pytest.raises(SigmaUserError, match=r"'overhead' -> 'observation.images.nope' is not one"):
        Pi05Base(Pi05BaseConfig(**src), D)
    with pytest.raises(SigmaUserError, match=r"action dim 6 and state dim 6; .* has 9 and 6"):
        Pi05Base(Pi05BaseConfig(**source), D.model_copy(update={"action_dim": 9}))


def test_sigma_trains_both_stages_on_pi05(source, tmp_path):
    from sigma_core.train import Trainer

    shards = write_synthetic_shards(tmp_path / "shards", D, episodes=4, frames=24)
    data = {"path": str(shards), "batch_size": 2}
    base_spec = pi05_spec(source, data=data, train={"stage": "base", "steps": 2})
    Trainer(validate_spec(base_spec, get_registry()), shards, tmp_path / "base").train()
    train = {"stage": "sigma", "steps": 2, "init_from": str(tmp_path / "base" / "policy")}
    sigma_spec = pi05_spec(source, data=data, train=train)
    trainer = Trainer(validate_spec(sigma_spec, get_registry()), shards, tmp_path / "sigma")
    stats = trainer.dataset.meta["stats"]["action"]["mean"]
    assert torch.allclose(trainer.policy.base_policy.action_mean, torch.tensor(stats))
    result = trainer.train()
    assert result.steps == 2 and all(map(torch.isfinite, map(torch.tensor, result.last.values())))
    with safe_open(str(tmp_path / "sigma" / "policy" / "model.safetensors"), "pt") as f:
        saved = set(f.keys())
    pi05 = {f"base_policy.policy.{k}" for k in trainer.policy.base_policy.pi05.state_dict()}
    assert saved and not saved & pi05  # the trained LoRA is saved under backbone.model only
    assert any("lora_" in k for k in saved)


def test_an_nf4_pi05_trains_lora_and_reloads_to_the_same_actions(source, tmp_path):
    """load_in_4bit: the shared language model is NF4; LoRA on top; no quant state saved."""
    bnb = pytest.importorskip("bitsandbytes")
    raw = pi05_spec({**source, "load_in_4bit": True})
    policy = SigmaPolicy(validate_spec(raw, get_registry())).eval()
    lm = policy.base_policy.pi05.model.paligemma_with_expert.paligemma.model.language_model
    quantized = [m for m in lm.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert quantized and all(m.weight.quant_type == "nf4" for m in quantized)
    batch = example_batch(D, batch_size=2)
    out = policy(batch, telepathy=True)
    out.actions.trajectory.square().mean().backward()
    grads = [p.grad for n, p in policy.backbone.named_parameters() if "lora_A" in n]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    policy.zero_grad()
    policy.save_pretrained(tmp_path / "ckpt")
    with safe_open(str(tmp_path / "ckpt" / "model.safetensors"), "pt") as f:
        saved = set(f.keys())
    assert not [k for k in saved if "absmax" in k or "quant" in k]
    restored = SigmaPolicy.from_pretrained(tmp_path / "ckpt").eval()
    assert torch.equal(planned_actions(policy, batch), planned_actions(restored, batch))


def test_sigma_eval_replays_a_pi05_run_in_batches_as_one_episode_at_a_time(source, tmp_path):
    """A stage-sigma run on π0.5: the batched replay's rows equal one episode per forward."""
    from sigma_core.data import ShardDataset
    from sigma_core.eval import open_source, replay

    torch.manual_seed(0)
    raw = pi05_spec(source, train={"stage": "sigma"}, data={"run_stride": 4})
    SigmaPolicy(validate_spec(raw, get_registry())).save_pretrained(tmp_path / "run")
    shards = write_synthetic_shards(
        tmp_path / "shards",
        D,
        episodes=6,
        frames=(20, 30, 26),
        tasks=("pick up the red cube", "go"),
        val_fraction=0,
        test_fraction=0.67,
    )
    ds = ShardDataset(shards, split="test")
    one, batched = (
        replay([open_source(tmp_path / "run")], ds, 4, 0, episodes_per_batch=n) for n in (1, 4)
    )
    assert len(one) == 3 * sum(len(w) for w in ds.episode_runs(4).values())
    for a, b in zip(one, batched, strict=True):
        assert (a["episode"], a["frame"], a["group"]) == (b["episode"], b["frame"], b["group"])
        for metric in ("mse_vec", "mse_chk", "mse_trj", "tau_l2", "sem_align", "image_reliance"):
            assert b[metric] == pytest.approx(a[metric], rel=1e-5, abs=1e-6), (metric, a, b)
