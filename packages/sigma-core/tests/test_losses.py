"""TRAF and TSAC terms against hand computations on small tensors."""

from __future__ import annotations

import math

import pytest
import torch

from sigma_core.train.losses import (
    LOG_COLUMNS,
    TABLE1_COLUMNS,
    LossConfig,
    Ramp,
    hard_set,
    info_nce,
    l_intent,
    l_tau,
    l_time,
    sigma_objective,
    traf,
)
from sigma_core.types import ActionSet


def test_traf_matches_hand_computation_and_picks_top_rho():
    zeros = ActionSet(torch.zeros(4, 2), torch.zeros(4, 3, 2), torch.zeros(4, 5, 2))
    # per-sample errors chosen so that mse_vec = [1, 4, 0, 9], mse_chk = [0, 1, 0, 0], mse_trj = 0
    pred = ActionSet(
        torch.tensor([[1.0, 1], [2, 2], [0, 0], [3, 3]]),
        torch.zeros(4, 3, 2).index_fill_(0, torch.tensor([1]), 1.0),
        torch.zeros(4, 5, 2),
    )
    cfg = LossConfig(alpha_vec=1.0, alpha_chk=2.0, alpha_trj=3.0, hard_ratio=0.5, lambda_hard=0.5)
    t = traf(pred, zeros, cfg)
    assert t.mse["vec"].tolist() == [1, 4, 0, 9] and t.mse["chk"].tolist() == [0, 1, 0, 0]
    assert t.difficulty.tolist() == [1, 5, 0, 9]
    assert t.hard.tolist() == [False, True, False, True]  # top ceil(0.5 * 4) = 2
    weighted = torch.tensor([1.0, 4 + 2, 0, 9])
    assert t.l_act.item() == pytest.approx(weighted.mean().item())
    assert t.l_hard.item() == pytest.approx((6 + 9) / 2)
    assert t.total.item() == pytest.approx(weighted.mean().item() + 0.5 * 7.5)


@pytest.mark.parametrize(("b", "rho", "k"), [(10, 0.3, 3), (7, 0.3, 3), (4, 0.01, 1), (5, 1.0, 5)])
def test_hard_set_size_is_ceil_rho_b(b, rho, k):
    h = torch.randn(b)
    mask = hard_set(h, rho)
    assert mask.sum().item() == k
    assert h[mask].min() >= h[~mask].max() if k < b else mask.all()


def test_hard_set_ties_take_the_earlier_sample():
    assert hard_set(torch.tensor([1.0, 2.0, 2.0, 0.0]), 0.25).tolist() == [
        False,
        True,
        False,
        False,
    ]


def test_tsac_terms_match_hand_computation():
    z = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    m_prev = torch.tensor([[1.0, 1.0], [0.0, 0.0]])  # the second sample has no memory yet
    assert l_time(z, m_prev).item() == pytest.approx(1 - 1 / math.sqrt(2))
    assert l_time(z, torch.zeros(2, 2)).item() == 0.0
    assert l_intent(z, torch.tensor([[2.0, 0.0], [1.0, 0.0]])).item() == pytest.approx(-0.5)
    keys = torch.tensor([[3.0, 0.0], [0.0, 1.0]])  # matching keys: cos 1 on the diagonal, 0 off
    expected = -math.log(math.exp(1 / 0.5) / (math.exp(1 / 0.5) + 1))
    assert info_nce(z, keys, 0.5).item() == pytest.approx(expected)
    tau = torch.tensor([[0.3, 0.4], [3.0, 0.0]])  # norms 0.5 (below tau0 = 1) and 3
    c_act = torch.tensor([[0.6, 0.8], [0.0, 1.0]])  # cos 1 and 0
    cfg = LossConfig(tau_l2=0.01, lambda_collapse=2.0, tau0=1.0, eta=0.1)
    per = [0.01 * 0.25 + 2.0 * 0.25 + 0.0, 0.01 * 9 + 0.0 + 0.1 * 1.0]
    assert l_tau(tau, c_act, cfg).item() == pytest.approx(sum(per) / 2)


def test_ramps_at_start_middle_and_end():
    r = Ramp(start=0.0, target=0.2, steps=100)
    assert [r(t, 300) for t in (0, 50, 100, 1000)] == [0.0, pytest.approx(0.1), 0.2, 0.2]
    assert Ramp(start=1.0, target=0.0, steps=4)(1, 300) == 0.75
    assert Ramp(start=0.3, target=0.7, steps=0)(0, 300) == 0.7
    half = Ramp(start=0.0, target=1.0, until=0.5)  # a fraction of the run: scales with it
    assert (half(50, 200), half(100, 200), half(50, 400)) == (0.5, 1.0, 0.25)


def test_default_ramps_are_table1s():
    """Table 1 (300 steps): w_sem 0.1 -> 1.0, w_int 0.1 -> 0.8, w_tau 0 -> 0.03 by step ~82."""
    cfg = LossConfig()
    ramps = {"w_sem": cfg.w_sem, "w_int": cfg.w_intent, "w_tau": cfg.w_tau}
    want = {"w_sem": (0.1, 0.55, 1.0), "w_int": (0.1, 0.45, 0.8), "w_tau": (0.0, 0.015, 0.03)}
    for name, ramp in ramps.items():
        assert ramp.length(300) == 82, name
        got = (ramp(0, 300), ramp(41, 300), ramp(82, 300))
        assert got == pytest.approx(want[name]), name
        assert ramp(299, 300) == want[name][2]


def test_objective_logs_table1_columns_and_backpropagates():
    from sigma_core.model.policy import build_policy
    from sigma_core.plugins.registry import get_registry
    from sigma_core.spec import validate_spec
    from sigma_core.testing import CONTRACT_DIMS, example_batch

    d = CONTRACT_DIMS
    spec = validate_spec({"model": {"dims": d.model_dump()}}, get_registry())
    policy = build_policy(spec)
    b = example_batch(d)
    out = policy(b)
    target = ActionSet(
        torch.randn(4, d.action_dim),
        torch.randn(4, d.chunk_horizon, d.action_dim),
        torch.randn(4, d.horizon, d.action_dim),
    )
    loss, row = sigma_objective(out, target, torch.zeros(4, d.d_model), 41, LossConfig(), 300)
    assert tuple(row) == LOG_COLUMNS
    assert tuple(row)[:11] == TABLE1_COLUMNS
    assert row["w_sem"] == pytest.approx(0.55)
    assert row["hard_ratio"] == 0.5  # ceil(0.3 * 4) = 2 of 4 samples: rho, realized
    assert row["hard_excess"] >= 1.0
    assert row["L_time"] == 0.0  # m_prev = 0: the first window of a run
    # Table 1's identities: L_act is L_act,total; loss - L_act = sum of w * L
    assert row["L_act"] == pytest.approx(row["L_act_mean"] + 0.5 * row["L_act_hard"], rel=1e-6)
    w = row["w_sem"] * row["L_sem"] + row["w_int"] * row["L_int"] + row["w_tau"] * row["L_tau"]
    assert row["loss"] - row["L_act"] == pytest.approx(w, rel=1e-4)
    loss.backward()
    for slot in ("residual", "intent", "memory"):
        assert any(p.grad is not None for p in getattr(policy, slot).parameters()), slot


def test_traf_leaves_padded_target_steps_out():
    """valid (B, T): steps past an episode's end (LeRobot's action_is_pad) do not count,
    and the per-sample mean is over the valid steps only."""
    g = torch.Generator().manual_seed(0)
    pred = ActionSet(*(torch.randn(2, *s, 3, generator=g) for s in ((), (4,), (8,))))
    target = pred.map(torch.zeros_like)
    valid = torch.ones(2, 8, dtype=torch.bool)
    valid[0, 2:] = False
    terms = traf(pred, target, LossConfig(), valid)
    want_chk = torch.stack([pred.chunk[0, :2].pow(2).mean(), pred.chunk[1].pow(2).mean()])
    want_trj = torch.stack([pred.trajectory[0, :2].pow(2).mean(), pred.trajectory[1].pow(2).mean()])
    torch.testing.assert_close(terms.mse["chk"], want_chk)
    torch.testing.assert_close(terms.mse["trj"], want_trj)
    torch.testing.assert_close(terms.mse["vec"], pred.vector.pow(2).mean(1))
    far = target.map(torch.clone)
    far.trajectory[0, 2:] += 1e3  # whatever fills the padding
    far.chunk[0, 2:] += 1e3
    assert torch.equal(traf(pred, far, LossConfig(), valid).total, terms.total)
    every = torch.ones(2, 8, dtype=torch.bool)
    assert torch.equal(
        traf(pred, target, LossConfig()).total, traf(pred, target, LossConfig(), every).total
    )
