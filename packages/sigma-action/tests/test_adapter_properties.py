"""Properties of the inference adapter (paper §5), for any input hypothesis can find.

``a = a_base + scale·Δa`` with ``scale = min + (max − min)·exp(−risk/T)``:
finite for finite inputs; on the segment [a_base, a_base + Δa] when max_scale <= 1;
the scale never grows with the risk; NaN/inf in a sample's Δa, τ or c_act gives
that sample exactly its base action and leaves the others alone.
"""

from __future__ import annotations

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sigma_action.config import IdentityAdapterConfig, RiskAdapterConfig
from sigma_action.control import IdentityAdapter, RiskAdapter
from sigma_core import ActionSet, Dims

DIMS = Dims(d_model=4, action_dim=2, chunk_horizon=2, horizon=3)
B = 3
finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False, width=32)


def tensor(shape: tuple[int, ...]) -> st.SearchStrategy[torch.Tensor]:
    n = math.prod(shape)
    return st.lists(finite, min_size=n, max_size=n).map(lambda v: torch.tensor(v).view(shape))


def action_sets() -> st.SearchStrategy[ActionSet]:
    a, h, t = DIMS.action_dim, DIMS.chunk_horizon, DIMS.horizon
    return st.builds(ActionSet, tensor((B, a)), tensor((B, h, a)), tensor((B, t, a)))


configs = st.builds(
    lambda lo, width, t, w: RiskAdapterConfig(
        min_scale=lo, max_scale=min(1.0, lo + width), temperature=t, w_ratio=w, fallback_below=0.0
    ),
    st.floats(0, 0.5),
    st.floats(0, 1),
    st.floats(0.05, 10),
    st.floats(0, 5),
)


@settings(max_examples=60, deadline=None)
@given(configs, action_sets(), action_sets(), tensor((B, 4)), tensor((B, 4)))
def test_finite_inputs_give_finite_actions_on_the_segment(cfg, base, delta, tau, c_act):
    actions, out = RiskAdapter(cfg, DIMS).apply(base, delta, tau, c_act)
    assert out.fallbacks == 0 and torch.isfinite(out.scale).all()
    assert ((out.scale >= 0) & (out.scale <= cfg.max_scale + 1e-6)).all()
    for a, b, d in zip(
        (actions.vector, actions.chunk, actions.trajectory),
        (base.vector, base.chunk, base.trajectory),
        (delta.vector, delta.chunk, delta.trajectory),
        strict=True,
    ):
        assert torch.isfinite(a).all()
        s = out.scale.view(-1, *([1] * (a.ndim - 1)))
        torch.testing.assert_close(a, b + s * d)  # a = a_base + s·Δa with s in [0, 1]:
        lo, hi = torch.minimum(b, b + d), torch.maximum(b, b + d)  # on the segment
        tol = 1e-3 * (1 + d.abs())
        assert ((a >= lo - tol) & (a <= hi + tol)).all()


@settings(max_examples=60, deadline=None)
@given(configs, st.lists(st.floats(0, 1e3), min_size=2, max_size=16))
def test_scale_never_grows_with_risk(cfg, risks):
    adapter = RiskAdapter(cfg, DIMS)
    r = torch.tensor(sorted(risks), dtype=torch.float64)
    scale = adapter.scale_of(r)
    assert (scale[1:] <= scale[:-1] + 1e-12).all()


@settings(max_examples=40, deadline=None)
@given(
    action_sets(),
    action_sets(),
    tensor((B, 4)),
    tensor((B, 4)),
    st.integers(0, B - 1),
    st.sampled_from(["vector", "chunk", "trajectory", "tau", "c_act"]),
    st.sampled_from([math.nan, math.inf, -math.inf]),
)
def test_a_non_finite_sample_gets_exactly_its_base_action(base, delta, tau, c_act, i, where, bad):
    if where in ("tau", "c_act"):
        {"tau": tau, "c_act": c_act}[where][i, 0] = bad
    else:
        getattr(delta, where)[i].view(-1)[0] = bad
    for adapter in (
        RiskAdapter(RiskAdapterConfig(), DIMS),
        IdentityAdapter(IdentityAdapterConfig(), DIMS),
    ):
        actions, out = adapter.apply(base, delta, tau, c_act)
        assert out.fallbacks == 1 and bool(out.fallback[i]) and out.scale[i] == 0
        for name in ("vector", "chunk", "trajectory"):
            a, b = getattr(actions, name), getattr(base, name)
            assert torch.equal(a[i], b[i])  # the base, bit for bit
            others = [j for j in range(B) if j != i]
            assert torch.isfinite(a[others]).all()  # the rest of the batch is untouched by it


def test_identity_applies_the_whole_residual():
    base = ActionSet(torch.zeros(B, 2), torch.zeros(B, 2, 2), torch.zeros(B, 3, 2))
    delta = base.map(lambda x: torch.ones_like(x))
    actions, out = IdentityAdapter(IdentityAdapterConfig(), DIMS).apply(
        base, delta, torch.ones(B, 4), torch.ones(B, 4)
    )
    assert torch.equal(out.scale, torch.ones(B)) and torch.equal(actions.chunk, delta.chunk)
