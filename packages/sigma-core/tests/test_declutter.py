"""The tau pass that sees the pixels (``vision.tau_stem``) and ``L_declutter``
(:mod:`sigma_core.train.declutter`) on a tiny random policy."""

from __future__ import annotations

import pytest
import torch

from sigma_core import SigmaUserError, build_policy, get_registry, validate_spec
from sigma_core.errors import SpecError
from sigma_core.testing.fakes import example_batch
from sigma_core.train.declutter import (
    ClutteredStates,
    declutter_loss,
    declutter_parameters,
    fit_declutter,
)

SCENE = 6


def _policy(tau_stem: bool = True, stage: str = "sigma", seed: int = 0, route: str = "all"):
    vision = {"type": "perceiver", "stem_channels": [4, 8], "film": False, "tau_stem": tau_stem}
    dims = {"d_model": 32, "image_size": 32, "chunk_horizon": 4, "horizon": 8}
    dims |= {"environment_state_dim": SCENE, "auxiliary_state_dim": SCENE}
    raw = {
        "model": {"dims": dims, "scene_state": "estimated", "vision": vision, "tau_route": route},
        "train": {"stage": stage},
    }
    torch.manual_seed(seed)
    return build_policy(validate_spec(raw, get_registry())).eval()


def _states(policy, n: int = 8, seed: int = 0) -> ClutteredStates:
    batch = example_batch(policy.dims, n, seed=seed, targets=False)
    g = torch.Generator().manual_seed(seed + 1)
    clean = (batch.images + 0.3 * torch.rand(batch.images.shape, generator=g)).clamp(0, 1)
    return ClutteredStates(
        images=batch.images.half(),
        state=batch.state,
        truth=batch.environment_state,
        clean=clean.half(),
        memory=policy.memory.initial_state(n, torch.device("cpu")),
        texts=batch.texts,
    )


def test_the_tau_pass_starts_as_the_base_and_re_estimates_the_scene():
    """At the start (tau stem zero), the tau pass sees what pass 1 sees: the same tokens
    and the same scene estimate; once the stem moves, s_tau is the estimator's reading
    of the tau pass's tokens, and the tau = 0 path is untouched."""
    policy = _policy()
    batch = example_batch(policy.dims, 3, targets=False)
    with torch.no_grad():
        intent, vis_base, state, s_hat = policy._encode(batch, torch.zeros(3, 32))
        vis_mod, s_tau = policy.telepathy_vision(batch, vis_base, state, s_hat, intent.tau)
        torch.testing.assert_close(vis_mod.tokens, vis_base.tokens)
        torch.testing.assert_close(s_tau, s_hat)
        base_plan = policy(batch, telepathy=False).plan
        for p in policy.vision.stem_tau.parameters():
            p.normal_(0, 0.3)
        vis_mod, s_tau = policy.telepathy_vision(batch, vis_base, state, s_hat, intent.tau)
        assert not torch.allclose(s_tau, s_hat, atol=1e-4)
        torch.testing.assert_close(s_tau, policy.auxiliary_state(vis_mod.tokens.mean(dim=1)))
        torch.testing.assert_close(policy(batch, telepathy=False).plan, base_plan)


def test_declutter_loss_is_zero_on_an_uncluttered_scene_at_the_start():
    """Zero-initialized, the tau pass is the base: where the clean render is the image
    itself (nothing to remove), L_declutter is exactly zero."""
    policy = _policy()
    states = _states(policy)
    states.clean = states.images.clone()
    idx = torch.arange(len(states))
    from sigma_core.train.declutter import declutter_targets

    tokens, scene, taus = declutter_targets(policy, states)
    loss, parts = declutter_loss(policy, states.batch(idx), taus, tokens, scene)
    assert loss.item() == pytest.approx(0.0, abs=1e-10) and set(parts) == {"tokens", "scene"}


def test_fit_declutter_trains_only_the_tau_stem_and_lowers_the_loss():
    policy = _policy()
    before = {n: p.detach().clone() for n, p in policy.named_parameters()}
    trained = declutter_parameters(policy)
    assert trained and all(n.startswith("vision.stem_tau.") for n in trained)
    states = _states(policy)
    log = fit_declutter(policy, states, steps=60, lr=1e-2, batch_size=8, log_every=59)
    first, last = log[0], log[-1]
    assert [r["step"] for r in log] == [0, 59]
    assert last["tokens"] + last["scene"] < 0.5 * (first["tokens"] + first["scene"])
    for name, p in policy.named_parameters():
        assert torch.equal(p, before[name]) != (name in trained), name
        assert not p.requires_grad
    # deterministic: the same fit from the same start gives the same weights
    again = _policy()
    fit_declutter(again, states, steps=60, lr=1e-2, batch_size=8, log_every=59)
    for (n, p), (_, q) in zip(policy.named_parameters(), again.named_parameters(), strict=True):
        assert torch.equal(p, q), n


def test_declutter_refuses_a_policy_it_cannot_train():
    states = _states(_policy())
    with pytest.raises(SigmaUserError, match=r"vision\.tau_stem: true"):
        fit_declutter(_policy(tau_stem=False), states, steps=1)
    with pytest.raises(SigmaUserError, match="not stage 'base'"):
        fit_declutter(_policy(stage="base"), states, steps=1)


def test_neither_stage_trains_the_tau_stem():
    """The tau stem is distilled only (distilled_params): stage sigma trains the rest of
    the pathway, stage base the tau = 0 path, and both leave the stem at its start."""
    from sigma_core.train import configure_stage, telepathy_parameter_names

    policy = _policy()
    stem = {n for n, _ in policy.named_parameters() if n.startswith("vision.stem_tau.")}
    assert stem and stem <= telepathy_parameter_names(policy)
    for stage in ("sigma", "base"):
        configure_stage(policy, stage)
        on = {n for n, p in policy.named_parameters() if p.requires_grad}
        assert on and not on & stem, stage


def test_tau_route_vision_acts_as_the_base_reading_the_tau_pass_vision():
    """model.tau_route: vision: delta_a = a_tau - a_0 with both queries at (c_text, 0), no
    residual heads: zero while the tau stem is (so stage sigma's L_act is the base's),
    then a_tau is the base's own heads on the tau pass's vision."""
    policy = _policy(route="vision")
    batch = example_batch(policy.dims, 3, targets=False)
    m0 = torch.zeros(3, 32)
    with torch.no_grad():
        policy.residual.forward = None  # never called on this route
        out = policy(batch, m0, telepathy=True)
        assert torch.equal(out.residual.chunk, torch.zeros_like(out.residual.chunk))
        for p in policy.vision.stem_tau.parameters():
            p.normal_(0, 0.3)
        out = policy(batch, m0, telepathy=True)
        intent, vis_base, state, s_hat = policy._encode(batch, m0)
        vis_mod, _ = policy.telepathy_vision(batch, vis_base, state, s_hat, intent.tau)
        zero = torch.zeros_like(intent.tau)
        q = policy.query(intent.c_text, zero, vis_mod.state_tokens, vis_mod.tokens)
        q0 = policy.query(intent.c_text, zero, vis_base.state_tokens, vis_base.tokens)
        noise = torch.zeros(3, policy.dims.horizon, policy.dims.action_dim)
        a_tau = policy._branches(q.queries, q.c_act, noise)
        a_0 = policy._branches(q0.queries, q0.c_act, noise)
        torch.testing.assert_close(out.residual.chunk, a_tau.chunk - a_0.chunk)
        assert out.residual.chunk.abs().amax() > 1e-4


def test_tau_route_vision_needs_the_telepathy_path():
    raw = {"model": {"telepathy": False, "tau_route": "vision"}}
    with pytest.raises(SpecError, match="tau_route: vision routes tau through the vision"):
        validate_spec(raw, get_registry())


def test_fit_declutter_adds_an_extra_loss_on_the_drawn_states():
    """extra_loss(idx) joins each step's loss (logged as ``extra``): here a pull of the
    stem's first FiLM bias towards 1, which L_declutter alone leaves near 0."""
    policy = _policy()
    states = _states(policy)
    drawn: list[torch.Tensor] = []

    def pull(idx: torch.Tensor) -> torch.Tensor:
        drawn.append(idx)
        return (policy.vision.stem_tau.film[0].bias - 1).pow(2).sum()

    log = fit_declutter(policy, states, steps=30, lr=1e-2, batch_size=4, extra_loss=pull)
    assert len(drawn) == 30 and all(i.shape == (4,) and int(i.max()) < len(states) for i in drawn)
    assert log[-1]["extra"] < 0.6 * log[0]["extra"]
    assert policy.vision.stem_tau.film[0].bias.mean() > 0.2
