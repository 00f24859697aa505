"""Values of the action workspace: tokenizer, fusion, controller and adapter formulas."""

from __future__ import annotations

import math

import torch

from sigma_action.config import ClipControllerConfig, RiskAdapterConfig, WeightedFusionConfig
from sigma_action.control import ClipController, RiskAdapter
from sigma_action.heads import WeightedFusion
from sigma_action.tokenizer import BinningTokenizer
from sigma_core import Dims

DIMS = Dims(d_model=8, action_dim=2, chunk_horizon=3, horizon=5)


def test_binning_round_trip_within_half_a_bin():
    tok = BinningTokenizer(-1.0, 1.0, 20)
    a = torch.linspace(-0.999, 0.999, 101)
    assert (tok.decode(tok.encode(a)) - a).abs().max() <= tok.width / 2 + 1e-6
    assert tok.encode(torch.tensor([-5.0, 5.0])).tolist() == [0, 19]
    one_hot = torch.nn.functional.one_hot(tok.encode(a), 20).float()
    torch.testing.assert_close(tok.decode_probs(one_hot), tok.decode(tok.encode(a)))


def test_fusion_starts_as_equal_weights():
    f = WeightedFusion(WeightedFusionConfig(), DIMS)
    v, c, t = torch.ones(1, 2), torch.full((1, 3, 2), 4.0), torch.full((1, 5, 2), 7.0)
    plan = f(v, c, t)
    torch.testing.assert_close(plan[0, 0], torch.full((2,), 4.0))  # (1 + 4 + 7) / 3
    torch.testing.assert_close(plan[0, 1:], torch.full((2, 2), 5.5))  # (4 + 7) / 2


def test_controller_clips_and_smooths():
    ctl = ClipController(ClipControllerConfig(low=[-1, -1], high=[1, 1], smoothing=0.5), DIMS)
    plan = torch.tensor([[[4.0, 0.0], [0.0, 0.0]]])
    out = ctl(plan, previous=torch.zeros(1, 2))
    torch.testing.assert_close(out, torch.tensor([[[1.0, 0.0], [1.0, 0.0]]]))


def test_risk_adapter_formula_and_fallback():
    cfg = RiskAdapterConfig(min_scale=0.1, max_scale=0.9, temperature=2.0, fallback_below=0.0)
    ad = RiskAdapter(cfg, DIMS)
    base, delta = torch.tensor([[3.0, 4.0]]), torch.tensor([[0.6, 0.8]])
    tau, c_act = torch.ones(1, 8), -torch.ones(1, 8)
    risk = 1.0 * 0.2 + 0.1 * (math.sqrt(8) / math.sqrt(8)) + 1.0 * 1.0
    want = 0.1 + 0.8 * math.exp(-risk / 2.0)
    out = ad(base, delta, tau, c_act)
    torch.testing.assert_close(out.scale, torch.tensor([want]))
    torch.testing.assert_close(out.risk, torch.tensor([risk]))
    strict = RiskAdapter(RiskAdapterConfig(fallback_below=0.9), DIMS)
    assert strict(base, delta, tau, c_act).scale.item() == 0.0


def test_flow_dit_learns_a_fixed_trajectory_distribution():
    """Target x_1 = mu + 0.05 eps with a fixed sinusoid mu; 300 Adam steps on CPU."""
    from sigma_action.config import FlowDiTConfig
    from sigma_action.flow import FlowDiT

    torch.manual_seed(0)
    dims = Dims(d_model=32, action_dim=2, chunk_horizon=4, horizon=8)
    flow = FlowDiT(FlowDiTConfig(num_layers=1, num_heads=2, num_steps=10), dims)
    steps = torch.linspace(0, 1, 8)
    mu = torch.stack([torch.sin(3 * steps), torch.cos(2 * steps)], dim=-1)  # (T, A)
    queries, c_act = torch.zeros(64, 3, 32), torch.zeros(64, 32)
    opt = torch.optim.Adam(flow.parameters(), lr=3e-3)
    for _ in range(300):
        target = mu + 0.05 * torch.randn(64, 8, 2)
        loss = flow.loss(queries, c_act, target).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        samples = flow(queries, c_act)
    assert (samples.mean(0) - mu).abs().max() < 0.1  # the mean is learned
    assert samples.std(0).mean() < 0.15  # noise of std 1 contracted towards the target
    assert samples.shape == (64, 8, 2)
