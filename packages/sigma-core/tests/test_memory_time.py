"""The semantic memory trained through time: runs of K windows, the unroll, L_time, step()."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sigma_core.data import EpochSampler, RunDataset, ShardDataset, collate, make_loader
from sigma_core.errors import SigmaUserError
from sigma_core.plugins.registry import get_registry
from sigma_core.spec import validate_spec
from sigma_core.testing import CONTRACT_DIMS, write_synthetic_shards
from sigma_core.train.losses import sigma_objective
from sigma_core.train.trainer import Trainer

D = CONTRACT_DIMS  # H_c = 4, T = 8


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "s"
    return write_synthetic_shards(out, D, episodes=4, frames=24, val_fraction=0.25, test_fraction=0)


def spec(stage="sigma", run_length=1, run_stride=None, **train):
    raw = {
        "model": {"dims": D.model_dump()},
        "data": {"batch_size": 3, "run_length": run_length, "run_stride": run_stride},
        "train": {"stage": stage, "steps": 4, "lr": 3e-3, "warmup_steps": 1, **train},
    }
    return validate_spec(raw, get_registry())


def frame_of(ds: ShardDataset, i: int) -> tuple[int, int]:
    """(episode, frame index) of window ``i``'s observation."""
    episode, frame = ds.window_frames()[i]
    assert episode == ds[i]["episode"]
    return episode, frame


def test_runs_are_consecutive_windows_of_one_episode(shards):
    ds = ShardDataset(shards, split="train")
    assert ds.runs(1, 4) == [(i,) for i in range(len(ds))]  # K = 1: the windows, in order
    runs = ds.runs(3, 2)
    # 24 frames, T = 8: windows start at frames 0..16; runs at 0..12 (0, 2, 4 ... 12, 14, 16)
    assert len(runs) == 3 * 13
    for run in runs:
        (ep0, f0), *rest = [frame_of(ds, i) for i in run]
        assert [f for _, f in rest] == [f0 + 2, f0 + 4]
        assert all(ep == ep0 for ep, _ in rest)


def test_a_run_stride_longer_than_a_chunk_is_refused():
    with pytest.raises(
        SigmaUserError, match=r"data.run_stride 5 exceeds model.dims.chunk_horizon 4"
    ):
        spec(run_length=2, run_stride=5)


def unroll(policy, run, m0):
    """Manual chaining: window k reads m_prev = m_t of window k - 1."""
    outs, m = [], m0
    for batch in run:
        out = policy(batch, m)
        outs.append((out, m))
        m = out.intent.m_t
    return outs


def test_unrolled_objective_equals_manual_chaining_and_l_time_is_live(shards, tmp_path):
    s = spec(run_length=3, run_stride=2, allow_random_base=True)
    t = Trainer(s, shards, tmp_path / "r")
    t.policy.eval()  # no dropout: the manual pass sees the same network
    run = next(t._batches())
    assert len(run) == 3 and all(b.batch_size == 3 for b in run)
    torch.manual_seed(0)
    loss, row = t.objective(run, 2)
    torch.manual_seed(0)
    m0 = t.policy.memory.initial_state(3)
    manual = unroll(t.policy, run, m0)
    cfg = s.train.losses
    parts = [
        sigma_objective(o, b.targets, m, 2, cfg, 4) for (o, m), b in zip(manual, run, strict=True)
    ]
    assert loss.item() == pytest.approx(sum(p[0].item() for p in parts) / 3, rel=1e-6)
    # L_time by hand: mean over samples of 1 - cos(z_pool, m_prev), 0 on the first window
    by_hand = [0.0] + [
        (1 - F.cosine_similarity(o.intent.z_pool, m, dim=-1)).mean().item() for o, m in manual[1:]
    ]
    assert by_hand[1] > 0 and by_hand[2] > 0
    assert row["L_time"] == pytest.approx(sum(by_hand) / 3, rel=1e-5)
    assert [p[1]["L_time"] for p in parts] == pytest.approx(by_hand, rel=1e-5)


def w_lambda_memory_grad(objective, run):
    """The gradient on the m_{t-1} half of the gate W_λ (it reads [m_{t-1}; z_pool])."""
    objective.policy.zero_grad()
    objective(run, 10)[0].backward()
    grad = objective.policy.memory.w_lambda.weight.grad
    return grad[:, : D.d_model]


def test_gradient_reaches_the_memory_half_of_the_gate_only_through_time(shards, tmp_path):
    s = spec(run_length=2, run_stride=4, allow_random_base=True)
    t = Trainer(s, shards, tmp_path / "g")
    run = next(t._batches())
    assert w_lambda_memory_grad(t.objective, run).abs().sum() > 0
    # one window from m_0 = 0: that half of W_λ multiplies zeros, so no gradient at all
    assert w_lambda_memory_grad(t.objective, run[:1]).abs().sum() == 0


def test_k1_is_the_window_objective_of_before(shards, tmp_path):
    """K = 1: batches are collated windows in the epoch sampler's order, the loss is
    sigma_objective from m_0 (bit for bit what stage sigma computed before runs existed)."""
    s = spec(allow_random_base=True)
    t = Trainer(s, shards, tmp_path / "k1")
    order = EpochSampler(len(t.dataset), s.train.seed, 0).order()
    got = next(t._batches())
    want = collate([t.dataset[i] for i in order[:3]])
    assert len(got) == 1 and torch.equal(got[0].images, want.images)
    torch.manual_seed(5)
    loss, row = t.objective(got, 1)
    torch.manual_seed(5)
    m0 = t.policy.memory.initial_state(3)
    ref = sigma_objective(t.policy(want, m0), want.targets, m0, 1, s.train.losses, 4)
    assert torch.equal(loss, ref[0]) and row == ref[1]


def test_streaming_step_equals_the_training_unroll(shards):
    """step() over an episode replans every run_stride frames with the memory carried:
    the plans and memories are those of the unroll over the same windows."""
    s = spec(run_length=3, run_stride=2)
    torch.manual_seed(0)
    from sigma_core.model.policy import build_policy

    policy = build_policy(s).eval()
    ds = ShardDataset(shards, split="train")
    (run_index,) = [r for r in ds.runs(3, 2) if frame_of(ds, r[0])[1] == 0][:1]
    (run,) = make_loader(RunDataset(ds, [run_index]), 1, shuffle=False)
    with torch.no_grad():
        m, plans, memories = None, [], []
        for batch in run:
            plan, m = policy.act(batch, m)
            plans.append(plan)
            memories.append(m)
        policy.reset()  # default stride: data.run_stride = 2
        actions = []
        for k, batch in enumerate(run):
            for _ in range(2):  # two control steps per window: frames 2k, 2k + 1
                actions.append(policy.step(batch))
            torch.testing.assert_close(policy._memory, memories[k], rtol=0, atol=0)
    want = torch.cat([p[:, :2] for p in plans], 1)
    torch.testing.assert_close(torch.stack(actions, 1), want, rtol=0, atol=0)


def test_stage_sigma_on_a_random_base_is_refused_unless_allowed(shards, tmp_path):
    with pytest.raises(SigmaUserError, match=r"train.init_from.*base_policy.*allow_random_base"):
        Trainer(spec(), shards, tmp_path / "no")
    Trainer(spec(allow_random_base=True), shards, tmp_path / "yes")  # the opt-out
    Trainer(spec("base"), shards, tmp_path / "base")  # stage base trains the base itself
