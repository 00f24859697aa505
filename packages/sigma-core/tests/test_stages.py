"""Stage base trains the tau = 0 path only; stage sigma leaves it bit-identical."""

from __future__ import annotations

import pytest
import torch

from sigma_core.model.policy import SigmaPolicy, build_policy
from sigma_core.plugins.registry import get_registry
from sigma_core.spec import validate_spec
from sigma_core.testing import CONTRACT_DIMS, example_batch
from sigma_core.train.losses import LossConfig, sigma_objective, traf
from sigma_core.train.stages import configure_stage, telepathy_parameter_names

D = CONTRACT_DIMS


def make() -> tuple:
    spec = validate_spec({"model": {"dims": D.model_dump()}}, get_registry())
    batch = example_batch(D)
    return build_policy(spec), batch, batch.targets


def snapshot(policy) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in policy.named_parameters()}


def test_the_tau0_path_never_reads_telepathy_parameters():
    policy, batch, _ = make()
    with torch.no_grad():
        before = policy(batch).base
        for name in telepathy_parameter_names(policy):
            policy.get_parameter(name).add_(torch.randn_like(policy.get_parameter(name)))
        after = policy(batch)
    torch.testing.assert_close(after.base.chunk, before.chunk, rtol=0, atol=0)
    assert not torch.allclose(after.actions.chunk, after.base.chunk)


def test_stage_sigma_leaves_the_base_bit_identical():
    policy, batch, target = make()
    counts = configure_stage(policy, "sigma")
    assert counts["trainable"] > 0
    names = {n for n, p in policy.named_parameters() if p.requires_grad}
    assert any("lora_" in n for n in names) and any(n.startswith("residual.") for n in names)
    assert "vision.modulator.theta_mod" in names and "vision.patch.weight" not in names
    before = snapshot(policy)
    opt = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=1e-2)
    for step in range(2):
        loss, _ = sigma_objective(
            policy(batch), target, torch.zeros(4, D.d_model), step, LossConfig(), 300
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = snapshot(policy)
    changed = {n for n in before if not torch.equal(before[n], after[n])}
    assert changed and changed <= names
    assert all(torch.equal(before[n], after[n]) for n in before if n not in names)


def test_stage_base_trains_the_base_and_not_the_pathway():
    policy, batch, target = make()
    configure_stage(policy, "base")
    names = {n for n, p in policy.named_parameters() if p.requires_grad}
    assert not any("lora_" in n for n in names)
    assert not names & telepathy_parameter_names(policy)
    assert "vision.patch.weight" in names and "query.norm.weight" in names
    before = snapshot(policy)
    opt = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=1e-2)
    loss = traf(policy(batch, telepathy=False).actions, target, LossConfig()).total
    loss.backward()
    opt.step()
    after = snapshot(policy)
    assert all(torch.equal(before[n], after[n]) for n in telepathy_parameter_names(policy))
    assert not torch.equal(before["vision.patch.weight"], after["vision.patch.weight"])
    # the frozen backbone base weights stay frozen whatever the stage
    configure_stage(policy, "sigma")
    frozen = [n for n, p in policy.named_parameters() if "backbone.model" in n and "lora_" not in n]
    assert frozen and not any(policy.get_parameter(n).requires_grad for n in frozen)
    with pytest.raises(ValueError, match="unknown stage"):
        configure_stage(policy, "both")  # type: ignore[arg-type]


def test_checkpoint_base_policy_serves_the_frozen_base(tmp_path):
    from sigma_core.errors import SigmaUserError

    base, batch, _ = make()
    base.eval().save_pretrained(tmp_path / "base")
    with torch.no_grad():
        want = base(batch, telepathy=False).base
    spec = validate_spec(
        {
            "model": {"dims": D.model_dump()},
            "base_policy": {"type": "checkpoint", "path": str(tmp_path / "base")},
            "train": {"seed": 7},  # a different init: the student is not the base
        },
        get_registry(),
    )
    student = build_policy(spec)
    # the base is a frozen submodule: no stage trains it, no checkpoint of the student holds it
    held = {n: p for n, p in student.named_parameters() if n.startswith("base_policy.")}
    assert held and not any(p.requires_grad for p in held.values())
    configure_stage(student, "sigma")
    assert not any(p.requires_grad for p in held.values())
    assert not any(k.startswith("base_policy.") for k in student.state_dict())
    with torch.no_grad():
        out = student.eval()(batch)
    torch.testing.assert_close(out.base.trajectory, want.trajectory, rtol=0, atol=0)
    assert not torch.allclose(out.actions.trajectory, want.trajectory)
    assert not student.base_policy.train().base.training  # the base stays in eval mode
    # a save/load round trip of the student keeps the base as loaded from its own path
    student.save_pretrained(tmp_path / "student")
    again = SigmaPolicy.from_pretrained(tmp_path / "student")
    for name, value in again.base_policy.base.state_dict().items():
        assert torch.equal(value, base.state_dict()[name]), name
    wrong = validate_spec(
        {
            "model": {"dims": {**D.model_dump(), "horizon": D.horizon + 1}},
            "base_policy": {"type": "checkpoint", "path": str(tmp_path / "base")},
        },
        get_registry(),
    )
    message = r"base does not match the spec's model.dims: horizon: base 8, spec 9$"
    with pytest.raises(SigmaUserError, match=message):
        build_policy(wrong)


def test_lora_only_control_is_residual_heads_on_c_text_at_tau_zero():
    raw = {"model": {"dims": D.model_dump(), "telepathy": False, "memory": {"type": "none"}}}
    policy = build_policy(validate_spec(raw, get_registry()))
    configure_stage(policy, "sigma")
    batch = example_batch(D)
    out = policy(batch)
    assert torch.equal(out.tau, torch.zeros_like(out.tau))
    want = policy.residual(out.intent.c_text, out.tau)
    torch.testing.assert_close(out.residual.trajectory, want.trajectory, rtol=0, atol=0)
    policy.zero_grad()
    traf(out.actions, batch.targets, LossConfig()).total.backward()
    grads = {
        n for n, p in policy.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0
    }
    assert any(n.startswith("residual.") for n in grads) and any("lora_" in n for n in grads)
    # no tau, no FiLM, no tau-conditioned queries: nothing else of the pathway learns
    assert not any(n.startswith(("vision.modulator", "intent.telepathy_projector")) for n in grads)


_MLP_RESIDUAL = get_registry().get("residual", "mlp").load()


class OutOfPathwayResidual(_MLP_RESIDUAL):
    """A residual that (wrongly) declares no telepathy parameters."""

    name = "out-of-pathway"
    telepathy_params = ()


class RenamedResidual(_MLP_RESIDUAL):
    name = "renamed-residual"


def test_untrained_slot_advice_follows_the_kind_and_the_pathway():
    import types

    from sigma_core.plugins.hookspecs import hookimpl
    from sigma_core.plugins.registry import load_registry
    from sigma_core.train.stages import untrained_slots

    module = types.ModuleType("residuals")

    @hookimpl
    def sigma_register_components(register):
        for cls in (OutOfPathwayResidual, RenamedResidual):
            register(
                kind="residual",
                name=cls.name,
                config=cls.config_class,
                impl=f"{__name__}:{cls.__name__}",
            )

    module.sigma_register_components = sigma_register_components
    registry = load_registry(env={})
    registry.register_plugin(module, name="residuals", distribution="acme-residuals")

    def advice(residual: str, stage: str) -> list[str]:
        raw = {"model": {"dims": D.model_dump(), "residual": {"type": residual}}}
        policy = build_policy(validate_spec(raw, registry), registry)
        configure_stage(policy, stage)
        return untrained_slots(policy, stage)

    (sigma,) = advice("out-of-pathway", "sigma")
    assert sigma.startswith("model.residual (out-of-pathway) has no trainable parameter in stage")
    assert "A residual belongs to the telepathy pathway and trains only in stage sigma" in sigma
    assert "OutOfPathwayResidual.telepathy_params = () leaves it out" in sigma
    assert "train.stage: base" not in sigma  # the old, misleading advice
    (base,) = advice("renamed-residual", "base")
    assert "trains in stage sigma on a trained base: use train.stage: sigma" in base
