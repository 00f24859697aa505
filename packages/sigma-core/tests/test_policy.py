"""The assembled model: forward/backward on images + state + text, baseline identities."""

from __future__ import annotations

import pytest
import torch

from sigma_core.model.policy import build_policy, parameter_counts
from sigma_core.plugins.registry import get_registry
from sigma_core.spec import validate_spec
from sigma_core.testing import CONTRACT_DIMS
from sigma_core.types import ActionSet, SigmaBatch


@pytest.fixture(scope="module")
def policy():
    spec = validate_spec({"model": {"dims": CONTRACT_DIMS.model_dump()}}, get_registry())
    torch.manual_seed(0)
    return build_policy(spec).eval()


def batch(b: int = 3, seed: int = 0) -> SigmaBatch:
    g = torch.Generator().manual_seed(seed)
    d = CONTRACT_DIMS
    images = torch.rand(
        b, len(d.cameras), d.frame_history, 3, d.image_size, d.image_size, generator=g
    )
    state = torch.randn(b, d.state_dim, generator=g)
    return SigmaBatch(images, state, ["pick up the red cube", "place it", "go"][:b])


def test_forward_returns_three_scales_tau_and_residuals(policy):
    d = CONTRACT_DIMS
    out = policy(batch())
    assert out.actions.vector.shape == (3, d.action_dim)
    assert out.actions.chunk.shape == (3, d.chunk_horizon, d.action_dim)
    assert out.actions.trajectory.shape == (3, d.horizon, d.action_dim)
    assert out.plan.shape == (3, d.chunk_horizon, d.action_dim)
    assert out.tau.shape == (3, d.d_model) and out.intent.m_t.shape == (3, d.d_model)
    for a, b_, r in zip(
        (out.actions.vector, out.actions.chunk),
        (out.base.vector, out.base.chunk),
        (out.residual.vector, out.residual.chunk),
        strict=True,
    ):
        torch.testing.assert_close(a, b_ + r)


def test_backward_reaches_trainable_and_not_frozen(policy):
    policy.zero_grad(set_to_none=True)
    out = policy.train()(batch())
    loss = sum(
        t.pow(2).mean() for t in (out.actions.vector, out.actions.chunk, out.actions.trajectory)
    )
    loss = loss + out.tau.pow(2).mean()
    loss.backward()
    policy.eval()
    frozen = [n for n, p in policy.named_parameters() if not p.requires_grad]
    assert frozen and all(policy.get_parameter(n).grad is None for n in frozen)
    got = [n for n, p in policy.named_parameters() if p.requires_grad and p.grad is not None]
    assert any("lora_" in n for n in got) and any(n.startswith("residual.") for n in got)
    trainable, frozen_count = parameter_counts(policy)
    assert trainable > 0 and frozen_count > 0


def test_telepathy_off_gives_exactly_the_base(policy):
    with torch.no_grad():
        out = policy(batch(), telepathy=False)
    assert torch.equal(out.actions.vector, out.base.vector)
    assert torch.equal(out.actions.trajectory, out.base.trajectory)
    assert torch.count_nonzero(out.tau) == 0


def test_external_base_actions_are_used(policy):
    b = batch()
    d = CONTRACT_DIMS
    ext = ActionSet(
        torch.full((3, d.action_dim), 5.0),
        torch.full((3, d.chunk_horizon, d.action_dim), 5.0),
        torch.full((3, d.horizon, d.action_dim), 5.0),
    )
    b.base_actions = ext
    with torch.no_grad():
        out = policy(b, telepathy=False)
    assert torch.equal(out.actions.chunk, ext.chunk)


def gated(memory, z_pool, m_prev):
    """The paper's gated memory by hand: u = GELU(W_u z), λ = σ(W_λ[m; z]), λ⊙m + (1−λ)⊙u."""
    u = torch.nn.functional.gelu(z_pool @ memory.w_u.weight.T + memory.w_u.bias)
    gate = torch.cat([m_prev, z_pool], dim=-1) @ memory.w_lambda.weight.T + memory.w_lambda.bias
    lam = torch.sigmoid(gate)
    return lam * m_prev + (1 - lam) * u


def test_memory_carries_across_calls(policy):
    """m_t of call k is m_{t-1} of call k+1, exactly as the hand-chained recurrence."""
    assert policy.spec.model.memory.type == "gated"
    with torch.no_grad():
        first = policy(batch(seed=0))
        second = policy(batch(seed=1), m_prev=first.intent.m_t)
        m0 = torch.zeros_like(first.intent.m_t)
        m1 = gated(policy.memory, first.intent.z_pool, m0)
        m2 = gated(policy.memory, second.intent.z_pool, m1)
    torch.testing.assert_close(first.intent.m_t, m1, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(second.intent.m_t, m2, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(m2, gated(policy.memory, second.intent.z_pool, m0))


def test_save_and_from_pretrained_round_trip(policy, tmp_path):
    from sigma_core.model.policy import SigmaPolicy

    policy.save_pretrained(tmp_path / "ckpt")
    policy.save_pretrained(tmp_path / "ckpt")  # overwriting is atomic too
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]
    restored = SigmaPolicy.from_pretrained(tmp_path / "ckpt").eval()
    b = batch()
    with torch.no_grad():
        torch.manual_seed(3)
        want = policy(b)
        torch.manual_seed(3)
        got = restored(b)
    assert torch.equal(want.actions.trajectory, got.actions.trajectory)
    assert torch.equal(want.tau, got.tau)


def test_from_pretrained_version_mismatch_is_clear(policy, tmp_path):
    import json

    from sigma_core.errors import SigmaUserError
    from sigma_core.model.policy import SigmaPolicy

    policy.save_pretrained(tmp_path / "ckpt")
    meta_path = tmp_path / "ckpt" / "sigma.json"
    meta = json.loads(meta_path.read_text())
    meta["components"]["model.chunk"]["version"] = "9.9.9"
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(SigmaUserError, match=r"model.chunk: saved with sigma-vla-action 9.9.9"):
        SigmaPolicy.from_pretrained(tmp_path / "ckpt")
    with pytest.raises(SigmaUserError, match="not a Sigma checkpoint"):
        SigmaPolicy.from_pretrained(tmp_path)


@pytest.mark.parametrize(
    ("slot", "alternative"),
    [("vector", "mlp"), ("chunk", "chunk-mlp"), ("trajectory", "flow-dit"), ("vision", "tower")],
)
def test_swapping_a_head_changes_only_that_component(slot, alternative):
    dims = CONTRACT_DIMS.model_dump()
    registry = get_registry()
    a = build_policy(validate_spec({"model": {"dims": dims}}, registry))
    b = build_policy(
        validate_spec({"model": {"dims": dims, slot: {"type": alternative}}}, registry)
    )
    assert b(batch()).plan.shape == a(batch()).plan.shape  # the swapped model runs end to end
    for (name, ca), (_, cb) in zip(a.named_components(), b.named_components(), strict=True):
        if name == slot:
            assert ca.name != cb.name == alternative
            continue
        sa, sb = ca.state_dict(), cb.state_dict()
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa), name


def test_residual_heads_get_no_gradient_without_telepathy(policy):
    policy.zero_grad(set_to_none=True)
    out = policy.train()(batch(), telepathy=False)
    (out.actions.vector.sum() + out.actions.trajectory.sum()).backward()
    policy.eval()
    assert all(p.grad is None for p in policy.residual.parameters())
    assert all(p.grad is None for p in policy.vision.modulator.parameters())
    assert any(p.grad is not None for p in policy.query.parameters())  # the base path trains


def test_streaming_step_equals_batched_forward_on_the_same_windows(policy):
    """step() over an episode == act() on the replan observations, batched, with m chained."""
    d = CONTRACT_DIMS
    episode = batch(3, seed=5)  # 3 replan points of one episode (each a B=1 observation)
    obs = [
        SigmaBatch(episode.images[i : i + 1], episode.state[i : i + 1], ["pick up the red cube"])
        for i in range(3)
    ]
    policy.reset()
    streamed, memories = [], []
    for o in obs:
        memories.append(policy._memory)
        for _ in range(d.chunk_horizon):
            torch.manual_seed(0)  # trajectory noise: same draw as the batched call below
            streamed.append(policy.step(o))
    streamed = torch.cat(streamed).view(3, d.chunk_horizon, d.action_dim)
    m_prev = torch.cat([policy.memory.initial_state(1, "cpu"), *memories[1:]])
    torch.manual_seed(0)
    together = SigmaBatch(episode.images, episode.state, ["pick up the red cube"] * 3)
    plans, m_t = policy.act(together, m_prev)
    torch.testing.assert_close(streamed, plans, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(m_t[:2], torch.cat(memories[1:]))
    # the memory really carries over: planning the 2nd window from m=0 differs
    torch.manual_seed(0)
    fresh, _ = policy.act(obs[1])
    assert not torch.allclose(fresh, plans[1:2])


def test_reset_clears_memory_and_n_action_steps_replans(policy):
    o = batch(1, seed=2)
    policy.reset(n_action_steps=2)
    policy.step(o)
    first = policy._memory.clone()
    policy.step(o)
    policy.step(o)  # third step: the queue of 2 ran out, so it replanned with m_1
    assert not torch.equal(policy._memory, first)
    policy.reset()
    assert policy._memory is None and policy._queue == []
    with pytest.raises(ValueError, match="n_action_steps must be in"):
        policy.reset(n_action_steps=CONTRACT_DIMS.chunk_horizon + 1)


def test_a_base_stage_policy_acts_on_its_tau0_path_by_default():
    spec = validate_spec(
        {"model": {"dims": CONTRACT_DIMS.model_dump()}, "train": {"stage": "base"}}, get_registry()
    )
    policy = build_policy(spec).eval()
    with torch.no_grad():
        out = policy(batch())
    assert torch.equal(out.residual.trajectory, torch.zeros_like(out.residual.trajectory))
    assert torch.equal(out.actions.trajectory, out.base.trajectory)  # untrained heads unused
    with torch.no_grad():
        assert not torch.equal(policy(batch(), telepathy=True).residual.vector, out.residual.vector)


# -- provenance on reload: a look-alike impostor is never loaded ----------------
class _Constructed:
    count = 0


def _impostor_registry(env):
    """The installed plugins plus ``acme-memory``: a look-alike ``memory: gated``
    (the built-in's tensor names, m_t that ignores m_prev)."""
    import sys
    import types

    from sigma_core.plugins.hookspecs import hookimpl
    from sigma_core.plugins.registry import load_registry

    GatedMemory = get_registry().get("memory", "gated").load()  # the built-in

    class LookAlike(GatedMemory):
        name = "gated"
        config_class = GatedMemory.config_class

        def __init__(self, config, dims):
            super().__init__(config, dims)
            _Constructed.count += 1

        def forward(self, z_pool, m_prev):
            return torch.nn.functional.gelu(self.w_u(z_pool))

    impl = types.ModuleType("acme_lookalike_memory")
    impl.LookAlike = LookAlike
    sys.modules["acme_lookalike_memory"] = impl
    plugin = types.ModuleType("acme")

    @hookimpl
    def sigma_register_components(register):
        register(
            kind="memory",
            name="gated",
            config=GatedMemory.config_class,
            impl="acme_lookalike_memory:LookAlike",
        )

    plugin.sigma_register_components = sigma_register_components
    registry = load_registry(env=env)
    registry.register_plugin(plugin, name="acme", distribution="acme-memory", version="6.6.6")
    return registry, LookAlike


def test_reload_builds_the_recorded_provider_not_a_preferred_look_alike(policy, tmp_path):
    from sigma_core.model.policy import SigmaPolicy

    policy.save_pretrained(tmp_path / "ckpt")
    built_in = get_registry().get("memory", "gated").load()
    registry, look_alike = _impostor_registry({"SIGMA_PREFER_PLUGINS": "acme-memory"})
    assert registry.get("memory", "gated").load() is look_alike  # what a new spec would get
    restored = SigmaPolicy.from_pretrained(tmp_path / "ckpt", registry).eval()
    assert type(restored.memory) is built_in
    assert restored.spec.model.memory.provider == "sigma-vla-intent"
    z, m = torch.randn(2, CONTRACT_DIMS.d_model), torch.randn(2, CONTRACT_DIMS.d_model)
    torch.testing.assert_close(restored.memory(z, m), policy.memory(z, m))


def test_reload_refuses_a_look_alike_when_the_recorded_provider_is_missing(
    policy, tmp_path, monkeypatch
):
    import safetensors.torch

    from sigma_core import __version__
    from sigma_core.errors import SigmaUserError
    from sigma_core.model.policy import SigmaPolicy

    policy.save_pretrained(tmp_path / "ckpt")
    registry, _ = _impostor_registry({"SIGMA_DISABLE_PLUGINS": "sigma-vla-intent"})
    assert registry.providers("memory", "gated")[0].distribution == "acme-memory"

    def no_tensors(*args, **kwargs):
        raise AssertionError("a tensor was loaded before the provenance check")

    monkeypatch.setattr(safetensors.torch, "load_model", no_tensors)
    _Constructed.count = 0
    for strict in (True, False):  # strict_versions=False relaxes versions, not provenance
        with pytest.raises(SigmaUserError) as e:
            SigmaPolicy.from_pretrained(tmp_path / "ckpt", registry, strict_versions=strict)
        message, v = str(e.value), __version__
        assert (
            f"model.memory: memory 'gated' was saved from sigma-vla-intent {v}; installed "
            "providers of 'gated': acme-memory 6.6.6"
        ) in message
        assert (
            f"model.intent: intent 'sigma' was saved from sigma-vla-intent {v}; installed "
            "providers of 'sigma': none"
        ) in message
        assert f"install the recorded distribution (pip install sigma-vla-intent=={v})" in message
        assert "never reloads another provider's component of the same name" in message
    assert _Constructed.count == 0  # nothing was even built
