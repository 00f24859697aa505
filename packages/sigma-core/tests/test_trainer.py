"""Training: loss goes down, stage freezing holds, resume is bit-identical."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from sigma_core.data import Episode, InMemorySource, PreprocessOptions, SourceInfo, preprocess
from sigma_core.errors import SigmaUserError
from sigma_core.plugins.registry import get_registry
from sigma_core.spec import validate_spec
from sigma_core.testing import CONTRACT_DIMS
from sigma_core.train.stages import is_lora, telepathy_parameter_names
from sigma_core.train.trainer import Trainer

D = CONTRACT_DIMS
REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    rng = np.random.default_rng(0)
    eps = []
    for i in range(6):
        n = 30
        t = np.linspace(0, 1, n, dtype=np.float32)[:, None]
        action = (np.sin(2 * np.pi * (t + i / 6)) * np.arange(1, D.action_dim + 1)).astype(
            np.float32
        )
        frames = {
            c: rng.integers(0, 256, (n, 3, D.image_size, D.image_size), dtype=np.uint8)
            for c in D.cameras
        }
        eps.append(Episode(i, f"task {i % 2}", action, action.copy(), frames))
    info = SourceInfo(
        "test", "synthetic", 30, D.action_dim, D.state_dim, {c: c for c in D.cameras}, {"n": 6}
    )
    out = tmp_path_factory.mktemp("shards") / "s"
    opts = PreprocessOptions(
        cameras=list(D.cameras),
        image_size=D.image_size,
        horizon=D.horizon,
        chunk=D.chunk_horizon,
        min_action_norm=0,
        val_fraction=0.2,
        test_fraction=0.0,
    )
    preprocess(InMemorySource(eps, info), out, opts)
    return out


def spec(stage: str = "base", steps: int = 6, data: dict | None = None, **train):
    raw = {
        "model": {"dims": D.model_dump()},
        "data": {"batch_size": 4, **(data or {})},
        "train": {"stage": stage, "steps": steps, "lr": 3e-3, "warmup_steps": 1, **train},
    }
    return validate_spec(raw, get_registry())


def timeless(rows: list[str]) -> list[dict]:
    """metrics.jsonl rows without the wall-clock columns."""
    return [{k: v for k, v in json.loads(r).items() if "seconds" not in k} for r in rows]


def weights(trainer) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in trainer.policy.state_dict().items()}


def test_base_stage_lowers_the_loss_and_logs_every_step(shards, tmp_path):
    trainer = Trainer(
        spec("base", steps=30), shards, tmp_path / "run", checkpoint_every=30, val_every=30
    )
    result = trainer.train()
    rows = [json.loads(r) for r in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 31))
    first = np.mean([r["L_act"] for r in rows[:5]])
    last = np.mean([r["L_act"] for r in rows[-5:]])
    assert last < 0.7 * first, (first, last)
    ckpt = result.checkpoint
    assert sorted(p.name for p in ckpt.iterdir()) == [
        "README.md",  # peft's model card
        "adapter_config.json",
        "adapter_model.safetensors",
        "heads.safetensors",
        "sigma.json",
        "trainer.json",
        "trainer.safetensors",
    ]
    heads = load_file(ckpt / "heads.safetensors")
    trainable = {n for n, p in trainer.policy.named_parameters() if p.requires_grad}
    assert set(heads) == trainable and not any(is_lora(n) for n in heads)
    meta = json.loads((ckpt / "sigma.json").read_text())
    assert meta["spec"]["train"]["stage"] == "base" and "model.backbone" in meta["components"]
    assert (tmp_path / "run" / "policy" / "model.safetensors").is_file()
    vals = [r["val_L_act"] for r in rows if "val_L_act" in r]
    assert len(vals) == 1 and (tmp_path / "run" / "best" / "model.safetensors").is_file()
    untrained = Trainer(spec("base", steps=1), shards, tmp_path / "u").validate()
    assert vals[0] < untrained  # held-out episodes got better too


def test_resume_after_interruption_is_bit_identical(shards, tmp_path, monkeypatch):
    kw = {"checkpoint_every": 2, "val_every": 3}  # validation must not disturb the RNG
    # stage sigma with the memory unrolled over runs of 2 windows (on a random base: a smoke test)
    run2 = {"data": {"run_length": 2, "run_stride": 2}, "allow_random_base": True}
    whole = Trainer(spec("sigma", steps=6, grad_accum=2, **run2), shards, tmp_path / "a", **kw)
    whole.train()
    part = Trainer(spec("sigma", steps=6, grad_accum=2, **run2), shards, tmp_path / "b", **kw)
    real = part.optimizer.step
    calls = {"n": 0}

    def crash(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 4:  # after checkpoint 2, during step 4
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(part.optimizer, "step", crash)
    with pytest.raises(KeyboardInterrupt):
        part.train()
    again = Trainer(spec("sigma", steps=6, grad_accum=2, **run2), shards, tmp_path / "b", **kw)
    again.train(resume=True)
    a, b = weights(whole), weights(again)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    rows_a = (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()
    rows_b = (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    assert timeless(rows_a) == timeless(rows_b)


def test_spec_data_mismatch_and_existing_run_are_clear_errors(shards, tmp_path):
    bad = validate_spec(
        {"model": {"dims": {**D.model_dump(), "horizon": D.horizon + 2}}}, get_registry()
    )
    with pytest.raises(SigmaUserError, match=r"does not match the spec's model.dims: horizon"):
        Trainer(bad, shards, tmp_path / "x")
    t = Trainer(spec("base", steps=1), shards, tmp_path / "y", checkpoint_every=1)
    t.train()
    with pytest.raises(SigmaUserError, match="holds a run already; pass --resume"):
        Trainer(spec("base", steps=1), shards, tmp_path / "y").train()


def test_non_finite_losses_skip_steps_then_abort(shards, tmp_path, monkeypatch):
    t = Trainer(spec("base", steps=3), shards, tmp_path / "n", checkpoint_every=1, max_bad_steps=3)
    before = weights(t)
    w = next(p for p in t.policy.parameters() if p.requires_grad)
    monkeypatch.setattr(t, "_loss", lambda batch: (w.sum() * float("nan"), {}))
    with (
        pytest.raises(SigmaUserError, match="3 optimizer steps in a row had a non-finite loss"),
        pytest.warns(RuntimeWarning, match=r"step 1: non-finite loss or gradient, step skipped"),
    ):
        t.train()
    after = weights(t)
    assert all(torch.equal(before[k], after[k]) for k in before)  # skipped, never applied


def test_stage_sigma_warns_when_the_base_does_not_fit_the_model(shards, tmp_path):
    """A pathway built on another vision than the base's (here without the base's
    keypoints) would train on a tau = 0 path that is not the base: stage sigma says so,
    naming a tensor that has no place."""
    from sigma_core import build_policy

    keypoints = spec("base").model_dump(mode="json")
    keypoints["model"]["vision"] |= {"spatial_softmax": 2}
    base = tmp_path / "base"
    build_policy(validate_spec(keypoints, get_registry())).save_pretrained(base)
    s = spec("sigma", steps=1, init_from=str(base))
    with pytest.warns(
        UserWarning, match=r"7 of its tensors do not fit this model \(e\.g\. vision\.keypoint"
    ):
        t = Trainer(s, shards, tmp_path / "sigma")
    assert t.init_counts["unused"] == 7 and t.init_counts["skipped"] == 0


def test_stage_sigma_starts_from_the_base_and_checkpoints_heads_plus_adapter(shards, tmp_path):
    base = Trainer(spec("base", steps=2), shards, tmp_path / "base", checkpoint_every=2)
    base.train()
    saved = load_file(tmp_path / "base" / "policy" / "model.safetensors")
    s = spec("sigma", steps=2)
    s = s.model_copy(
        update={
            "base_policy": s.base_policy.model_validate(
                {"type": "checkpoint", "path": str(tmp_path / "base" / "policy")}
            )
        }
    )
    t = Trainer(s, shards, tmp_path / "sigma", checkpoint_every=2)
    assert t.init and t.init["path"].endswith("policy") and t.init_counts["loaded"] > 0
    pathway = telepathy_parameter_names(t.policy)
    own = t.policy.state_dict()
    for name, value in saved.items():  # the whole tau = 0 path is the trained base
        assert torch.equal(own[name], value), name
    t.train()
    ckpt = t._last()
    heads = load_file(ckpt / "heads.safetensors")
    assert set(heads) == pathway  # stage sigma trains exactly the pathway (+ LoRA below)
    adapter = load_file(ckpt / "adapter_model.safetensors")
    assert adapter and all("lora_" in k for k in adapter)
    config = json.loads((ckpt / "adapter_config.json").read_text())
    lora = {n: p for n, p in t.policy.state_dict().items() if is_lora(n)}  # not the base's
    assert len(adapter) == len(lora)  # every LoRA tensor, in peft's own key format
    assert config["r"] == next(p for n, p in lora.items() if "lora_A" in n).shape[0]
    assert set(config["target_modules"]) >= {"q_proj", "v_proj"}
    sd = t.policy.state_dict()
    for name in pathway:
        assert torch.equal(heads[name], sd[name])


def test_tensorboard_oom_and_device_errors(shards, tmp_path, monkeypatch):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    t = Trainer(spec("base", steps=3), shards, tmp_path / "tb", tensorboard=True)
    t.train()
    events = EventAccumulator(str(tmp_path / "tb" / "tensorboard"))
    events.Reload()
    l_act = events.Scalars("train/L_act")
    logged = [json.loads(r)["L_act"] for r in (tmp_path / "tb" / "metrics.jsonl").open()]
    assert [e.step for e in l_act] == [1, 2, 3]
    assert [e.value for e in l_act] == pytest.approx(logged)
    assert "train/val_L_act" in events.Tags()["scalars"]

    oom = Trainer(spec("base", steps=2), shards, tmp_path / "oom")

    def boom(batch):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(oom, "_loss", boom)
    with pytest.raises(SigmaUserError) as exc:
        oom.train()
    msg = str(exc.value)
    for knob in ("data.batch_size", "train.grad_accum", "bf16", "load_in_4bit", "checkpointing"):
        assert knob in msg
    if not torch.cuda.is_available():
        with pytest.raises(SigmaUserError, match="--device cuda: no CUDA device"):
            Trainer(spec("base"), shards, tmp_path / "c", device="cuda")
    with pytest.raises(SigmaUserError, match="--device 'tpu': choose one of auto, cpu"):
        Trainer(spec("base"), shards, tmp_path / "c", device="tpu")


def test_steps_override_sets_the_schedule_length(shards, tmp_path):
    t = Trainer(spec("base", steps=100, min_lr_ratio=0.0), shards, tmp_path / "s", steps=4)
    assert t.spec.train.steps == 4
    t.train()
    lrs = [json.loads(r)["lr"] for r in (tmp_path / "s" / "metrics.jsonl").open()]
    # warm-up 1 step, then cosine over the remaining 3 steps of 4 (not of 100)
    assert lrs[0] == 0.0 and lrs[1] == pytest.approx(3e-3)
    assert lrs[3] == pytest.approx(3e-3 * 0.5 * (1 + math.cos(math.pi * 2 / 3)))


def test_native_base_loss_uses_each_branchs_own_loss(shards, tmp_path):
    from sigma_core.train.losses import per_sample_mse
    from sigma_core.train.trainer import StageObjective

    regression = {"vector": {"type": "mlp"}, "trajectory": {"type": "mlp"}}
    raw = spec("base").model_dump(mode="json")
    raw["model"] |= regression
    s = validate_spec(raw, get_registry())
    t = Trainer(s, shards, tmp_path / "r")
    run = next(t._batches())
    (batch,) = run  # data.run_length 1: runs of one window
    native_cfg = s.train.losses.model_copy(update={"base_loss": "native"})
    native = StageObjective(t.policy, "base", native_cfg, 6)
    mse = StageObjective(t.policy, "base", s.train.losses, 6)
    t.policy.eval()  # no dropout: both objectives see the same network
    # every branch here is a regression head, whose own loss is the MSE: the two agree
    assert native(run, 0)[1]["L_act"] == pytest.approx(mse(run, 0)[1]["L_act"], rel=1e-6)

    raw["model"]["trajectory"] = {"type": "flow-dit"}
    flow = Trainer(validate_spec(raw, get_registry()), shards, tmp_path / "f")
    flow.policy.eval()
    native_cfg = flow.losses.model_copy(update={"base_loss": "native"})
    objective = StageObjective(flow.policy, "base", native_cfg, 6)
    losses = objective.branch_losses(batch)
    q0 = flow.policy.tau0_queries(batch)
    torch.manual_seed(1)
    expected = flow.policy.trajectory.loss(q0.queries, q0.c_act, batch.targets.trajectory)
    torch.manual_seed(1)
    got = objective.branch_losses(batch)["trj"]
    assert torch.allclose(got, expected)  # flow matching, not MSE of a sampled trajectory
    decoded = flow.policy(batch, telepathy=False).actions.trajectory
    assert not torch.allclose(losses["trj"], per_sample_mse(decoded, batch.targets.trajectory))
    losses["trj"].sum().backward()
    grads = [p.grad for p in flow.policy.trajectory.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)


def test_fusion_weights_learn_from_l_fuse_only(shards, tmp_path):
    t = Trainer(spec("base", steps=3), shards, tmp_path / "f", checkpoint_every=3)
    (batch,) = next(t._batches())
    actions = t.policy(batch, telepathy=False).actions
    l_fuse = t.objective.fusion_loss(actions, batch.targets.chunk)
    w = t.policy.fusion.logits.detach().softmax(-1)  # equal weights at the start
    fused = (
        w[0, 0] * actions.vector
        + w[0, 1] * actions.chunk[:, 0]
        + w[0, 2] * actions.trajectory[:, 0]
    )
    expected_first = (fused - batch.targets.chunk[:, 0]).pow(2).mean(-1)
    h = batch.targets.chunk.shape[1]
    later = 0.5 * (actions.chunk[:, 1:] + actions.trajectory[:, 1:h])
    expected_later = (later - batch.targets.chunk[:, 1:]).pow(2).mean(-1)
    expected = torch.cat([expected_first[:, None], expected_later], 1).mean()
    assert l_fuse.item() == pytest.approx(expected.item(), rel=1e-5)
    t.policy.zero_grad()
    l_fuse.backward()
    with_grad = {n for n, p in t.policy.named_parameters() if p.grad is not None and p.grad.any()}
    assert with_grad == {"fusion.logits"}  # the branches are detached
    before = t.policy.fusion.logits.detach().clone()
    t.train()
    assert not torch.equal(before, t.policy.fusion.logits)
    row = json.loads((tmp_path / "f" / "metrics.jsonl").read_text().splitlines()[-1])
    assert row["loss"] == pytest.approx(row["L_act"] + row["L_fuse"], rel=1e-5)
    assert row["L_act"] == pytest.approx(row["L_act_mean"] + 0.5 * row["L_act_hard"], rel=1e-5)


def test_resume_refuses_other_initial_weights(shards, tmp_path):
    base = Trainer(spec("base", steps=1), shards, tmp_path / "b1", checkpoint_every=1)
    base.train()
    s = spec("sigma", steps=2, init_from=str(tmp_path / "b1" / "policy"))
    Trainer(s, shards, tmp_path / "run", checkpoint_every=1, steps=1).train()
    other = Trainer(spec("base", steps=2), shards, tmp_path / "b2", checkpoint_every=2)
    other.train()  # different weights
    moved = spec("sigma", steps=2, init_from=str(tmp_path / "b2" / "policy"))
    with pytest.raises(SigmaUserError, match="resume needs the same initial weights"):
        Trainer(moved, shards, tmp_path / "run").train(resume=True)
    Trainer(s, shards, tmp_path / "run").train(resume=True)  # the same weights resume


def test_num_workers_load_the_same_batches_in_worker_processes(shards, tmp_path):
    """data.num_workers moves loading into DataLoader workers; order and contents stay."""
    batches = {}
    for workers in (0, 2):
        s = spec("base")
        s = s.model_copy(update={"data": s.data.model_copy(update={"num_workers": workers})})
        trainer = Trainer(s, shards, tmp_path / f"w{workers}")
        rng = torch.get_rng_state()
        it = trainer._batches()
        per_epoch = len(trainer.dataset) // 4
        batches[workers] = [next(it)[0] for _ in range(per_epoch + 2)]  # into the second epoch
        assert torch.equal(torch.get_rng_state(), rng)  # loading never touches torch's RNG
        assert (trainer.epoch, trainer.position) == (1, 2 * 4)
    for a, b in zip(batches[0], batches[2], strict=True):
        assert a.texts == b.texts
        assert torch.equal(a.images, b.images) and torch.equal(a.targets.chunk, b.targets.chunk)


def test_a_head_the_stage_freezes_is_warned_about_and_train_head_trains_it(shards, tmp_path):
    import yaml

    from sigma_core.testing.contract import CONTRACT_DIMS as dims

    raw = yaml.safe_load((REPO / "configs" / "train-head.yaml").read_text())
    raw["model"]["dims"] = dims.model_dump()
    raw["train"] |= {"steps": 2, "warmup_steps": 1}
    raw["data"] = {"batch_size": 4}
    head = validate_spec(raw, get_registry())
    frozen = head.model_copy(
        update={
            "train": head.train.model_copy(update={"stage": "sigma", "allow_random_base": True})
        }
    )
    with pytest.warns(
        UserWarning, match=r"model.trajectory \(flow-dit\) has no trainable parameter"
    ):
        Trainer(frozen, shards, tmp_path / "frozen")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        t = Trainer(head, shards, tmp_path / "head", checkpoint_every=2)
    before = {n: p.detach().clone() for n, p in t.policy.trajectory.named_parameters()}
    t.train()
    after = dict(t.policy.trajectory.named_parameters())
    moved = [n for n in before if not torch.equal(before[n], after[n])]
    print(f"{len(moved)} of {len(before)} trajectory tensors moved")
    assert len(moved) > len(before) / 2  # the head trains (adaLN-zero gates start at 0)


def test_a_policy_builds_only_on_a_base_of_its_action_representation(tmp_path):
    """data.actions: a relative base under an absolute residual (or the reverse) is refused."""
    from sigma_core import build_policy, get_registry, validate_spec
    from sigma_core.train.trainer import check_same_actions

    registry = get_registry()
    dims = {"d_model": 32, "image_size": 32}
    base = validate_spec({"model": {"dims": dims}, "data": {"actions": "relative"}}, registry)
    build_policy(base).save_pretrained(tmp_path / "base")
    on_top = validate_spec({"model": {"dims": dims}}, registry)
    with pytest.raises(SigmaUserError, match=r"predicts relative actions.*data.actions: relative"):
        check_same_actions(on_top, str(tmp_path / "base"))
    check_same_actions(base, str(tmp_path / "base"))  # same representation: fine
    check_same_actions(on_top, None)


def test_the_auxiliary_scene_state_loss_trains_vision_in_stage_base_only():
    """dims.auxiliary_state_dim: L_state = MSE(head(mean V_base), s_env) joins stage base's
    loss (its gradient reaches the vision encoder); the head is frozen in stage sigma and
    the vision never reads the scene state."""
    from sigma_core import build_policy, get_registry, validate_spec
    from sigma_core.testing.fakes import example_batch
    from sigma_core.train.objective import StageObjective
    from sigma_core.train.stages import configure_stage

    dims = {"d_model": 32, "image_size": 32, "auxiliary_state_dim": 5}
    spec = validate_spec({"model": {"dims": dims}, "train": {"stage": "base"}}, get_registry())
    policy = build_policy(spec)
    configure_stage(policy, "base")
    batch = example_batch(spec.model.dims, batch_size=3)
    assert batch.environment_state.shape == (3, 5)
    grads = {}
    for weight in (0.0, 1.0):
        losses = spec.train.losses.model_copy(update={"lambda_state": weight})
        objective = StageObjective(policy, "base", losses, 10)
        policy.zero_grad()
        torch.manual_seed(0)
        loss, row = objective([batch], 0)
        loss.backward()
        grads[weight] = policy.vision.patch.weight.grad.clone()
    predicted = policy(batch, telepathy=False).extras["auxiliary_state"]
    assert predicted.shape == (3, 5)
    with torch.no_grad():  # a training-only target: inference does not compute it
        assert "auxiliary_state" not in policy.eval()(batch, telepathy=False).extras
    policy.train()
    want = (predicted - batch.environment_state).pow(2).mean().item()
    assert row["L_state"] == pytest.approx(want, rel=1e-5)
    assert not torch.allclose(grads[0.0], grads[1.0])  # L_state reaches the vision encoder
    assert policy.auxiliary_state[1].weight.grad.abs().sum() > 0
    configure_stage(policy, "sigma")
    assert not any(p.requires_grad for p in policy.auxiliary_state.parameters())
    assert policy.vision.state_encoder[0].in_features == 6  # not an input
    with pytest.raises(SigmaUserError, match="must be equal"):
        validate_spec({"model": {"dims": dims | {"environment_state_dim": 4}}}, get_registry())


def test_an_estimated_scene_state_is_the_oracle_on_the_auxiliary_heads_estimate():
    """model.scene_state: estimated: the vision's state encoder reads [state; sg(s_hat)]
    with s_hat = head(mean V_base), at inference never the observed scene state; while
    the base trains, the truth stands in with probability train.teacher_forcing."""
    from dataclasses import replace

    from sigma_core import build_policy, get_registry, validate_spec
    from sigma_core.testing.fakes import example_batch
    from sigma_core.train.objective import StageObjective
    from sigma_core.train.stages import configure_stage

    dims = {"d_model": 32, "image_size": 32, "environment_state_dim": 5, "auxiliary_state_dim": 5}
    with pytest.raises(SigmaUserError, match=r"scene_state: estimated .* equal and > 0"):
        validate_spec({"model": {"scene_state": "estimated"}}, get_registry())

    def build(scene_state: str, forcing: float = 0.5):
        spec = validate_spec(
            {
                "model": {"dims": dims, "scene_state": scene_state},
                "train": {"stage": "base", "teacher_forcing": forcing},
            },
            get_registry(),
        )
        return build_policy(spec)

    estimated, oracle = build("estimated"), build("observed")
    oracle.load_state_dict(estimated.state_dict())
    assert estimated.spec.model.observed_scene_state_dim == 0  # the rollout supplies none
    assert oracle.spec.model.observed_scene_state_dim == 5
    batch = example_batch(estimated.spec.model.dims, batch_size=3)
    other = replace(batch, environment_state=batch.environment_state + 3.0)
    estimated.eval(), oracle.eval()
    with torch.no_grad():
        vis = estimated.vision(batch.images, torch.cat([batch.state, torch.zeros(3, 5)], -1))
        s_hat = estimated.auxiliary_state(vis.tokens.mean(dim=1))
        torch.manual_seed(0)
        plan = estimated.act(batch)[0]
        torch.manual_seed(0)
        blind = estimated.act(replace(other, environment_state=None))[0]
        torch.manual_seed(0)
        told = oracle.act(replace(batch, environment_state=s_hat))[0]
    assert torch.equal(plan, blind)  # inference reads the cameras, not the scene state
    torch.testing.assert_close(plan, told)  # = the oracle told the estimate
    # the perceiver re-encodes only the state tokens, exactly as a full pass would
    state = torch.cat([batch.state, s_hat], -1)
    with torch.no_grad():
        again = estimated.vision.restate(vis, batch.images, state)
        full = estimated.vision(batch.images, state)
    torch.testing.assert_close(again.tokens, full.tokens)
    torch.testing.assert_close(again.state_tokens, full.state_tokens)

    # training: teacher forcing 1 reads the truth (= the oracle), 0 only the estimate
    for forcing, follows_truth in ((1.0, True), (0.0, False)):
        policy = build("estimated", forcing)
        policy.load_state_dict(estimated.state_dict())
        configure_stage(policy, "base")
        policy.train()
        outs = []
        for b in (batch, other):
            torch.manual_seed(0)
            outs.append(policy(b, telepathy=False).actions.trajectory)
        assert torch.equal(outs[0], outs[1]) is not follows_truth
    # L_act does not train the head through sg(s_hat): only L_state does
    losses = policy.spec.train.losses.model_copy(update={"lambda_state": 0.0})
    policy.zero_grad()
    StageObjective(policy, "base", losses, 10)([batch], 0)[0].backward()
    head = policy.auxiliary_state[1].weight.grad
    assert head is None or head.abs().sum() == 0


def test_state_weights_weight_l_state_and_hide_unestimated_entries():
    """train.losses.state_weights: L_state = sum_i w_i MSE_i / sum_i w_i; with an estimated
    scene state, an entry of weight 0 is read as 0, truth or estimate; bad weights are
    a clear error."""
    from dataclasses import replace

    from sigma_core import build_policy, get_registry, validate_spec
    from sigma_core.testing.fakes import example_batch
    from sigma_core.train.losses import state_loss

    est, tgt = torch.zeros(4, 3), torch.tensor([[1.0, 2.0, 3.0]]).expand(4, 3)
    assert state_loss(est, tgt).item() == pytest.approx(14 / 3)
    assert state_loss(est, tgt, [1.0, 0.0, 1.0]).item() == pytest.approx(5.0)
    assert state_loss(est, tgt, [0.0, 2.0, 0.0]).item() == pytest.approx(4.0)

    dims = {"d_model": 32, "image_size": 32, "environment_state_dim": 3, "auxiliary_state_dim": 3}
    for weights, match in (([1.0, 1.0], "2 weights"), ([0.0, 0.0, 0.0], "not all 0")):
        with pytest.raises(SigmaUserError, match=match):
            validate_spec(
                {"model": {"dims": dims}, "train": {"losses": {"state_weights": weights}}},
                get_registry(),
            )
    spec = validate_spec(
        {
            "model": {"dims": dims, "scene_state": "estimated"},
            "train": {
                "stage": "base",
                "teacher_forcing": 1.0,
                "losses": {"state_weights": [1, 1, 0]},
            },
        },
        get_registry(),
    )
    policy = build_policy(spec).train()
    batch = example_batch(spec.model.dims, batch_size=2)
    seen = policy.encode_vision(batch)[1]
    assert torch.equal(seen[:, -3:-1], batch.environment_state[:, :2])  # the truth (forcing 1)
    assert torch.equal(seen[:, -1], torch.zeros(2))  # weight 0: never read
    moved = replace(batch, environment_state=batch.environment_state + torch.tensor([0, 0, 5.0]))
    torch.manual_seed(0)
    a = policy(batch, telepathy=False).actions.trajectory
    torch.manual_seed(0)
    assert torch.equal(a, policy(moved, telepathy=False).actions.trajectory)


def test_teacher_noise_perturbs_only_the_forced_truth_while_the_base_trains():
    """train.teacher_noise σ: where the truth stands in for s_hat (teacher forcing, stage
    base, training) the state encoder reads truth + σ·N(0, 1); inference and stage sigma
    read s_hat, unperturbed."""
    from sigma_core import build_policy, get_registry, validate_spec
    from sigma_core.testing.fakes import example_batch

    dims = {"d_model": 32, "image_size": 32, "environment_state_dim": 3, "auxiliary_state_dim": 3}
    with pytest.raises(SigmaUserError, match="teacher_noise"):
        validate_spec({"train": {"teacher_noise": -0.1}}, get_registry())

    def build(stage: str, noise: float):
        raw = {
            "model": {"dims": dims, "scene_state": "estimated"},
            "train": {"stage": stage, "teacher_forcing": 1.0, "teacher_noise": noise},
        }
        return build_policy(validate_spec(raw, get_registry()))

    policy = build("base", 0.3).train()
    batch = example_batch(policy.spec.model.dims, batch_size=4096)
    torch.manual_seed(0)
    seen = policy.encode_vision(batch)[1][:, -3:]
    error = seen - batch.environment_state
    assert error.mean().abs().item() < 0.02
    assert error.std().item() == pytest.approx(0.3, rel=0.05)
    small = example_batch(policy.spec.model.dims, batch_size=3)
    policy.eval()
    with torch.no_grad():  # inference: the estimate, never the truth nor noise
        (_, a, s_hat), b = policy.encode_vision(small), policy.encode_vision(small)[1]
    assert torch.equal(a, b)
    assert torch.equal(a[:, -3:], s_hat)
    sigma = build("sigma", 0.3).train()
    sigma.load_state_dict(policy.state_dict())
    _, seen, s_hat = sigma.encode_vision(small)
    assert torch.equal(seen[:, -3:], s_hat.detach())


def test_the_scene_correction_starts_as_the_base_and_trains_in_stage_sigma_only():
    """model.scene_correction: s_tau = s_hat + C([Attn(W_q tau, V_mod); tau; s_hat]) feeds
    the tau pass's state tokens. C's last layer starts at zero, so an untrained correction
    changes no action; it is a telepathy parameter (stage sigma), supervised by
    λ_state·L_state(s_tau, s) on the named entries, and its gradient reaches only the tau
    pass (the tau = 0 path stays the base's)."""
    from dataclasses import replace

    from sigma_core import build_policy
    from sigma_core.testing.fakes import example_batch
    from sigma_core.train.losses import state_loss
    from sigma_core.train.objective import StageObjective
    from sigma_core.train.stages import configure_stage

    dims = {"d_model": 32, "image_size": 32, "environment_state_dim": 3, "auxiliary_state_dim": 3}
    with pytest.raises(SigmaUserError, match=r"scene_correction .* needs model.scene_state"):
        validate_spec({"model": {"dims": dims, "scene_correction": True}}, get_registry())

    def build(correction: bool):
        raw = {
            "model": {"dims": dims, "scene_state": "estimated", "scene_correction": correction},
            "train": {"stage": "sigma", "losses": {"state_weights": [1, 1, 0]}},
        }
        return build_policy(validate_spec(raw, get_registry()))

    corrected, plain = build(True), build(False)
    # every other slot initialises from its own seed: the two policies share their weights
    shared = {k: v for k, v in corrected.state_dict().items() if k in plain.state_dict()}
    assert all(torch.equal(v, plain.state_dict()[k]) for k, v in shared.items())
    extra = set(corrected.state_dict()) - set(plain.state_dict())
    assert extra and all(k.startswith("scene_correction.") for k in extra)
    batch = example_batch(corrected.spec.model.dims, batch_size=3)
    for policy in (corrected, plain):
        policy.eval()
    with torch.no_grad():
        torch.manual_seed(0)
        a = corrected.act(batch)[0]
        torch.manual_seed(0)
        b = plain.act(batch)[0]
    assert torch.equal(a, b)  # untrained: s_tau = s_hat exactly

    telepathy = telepathy_parameter_names(corrected)
    names = {n for n, _ in corrected.named_parameters() if n.startswith("scene_correction.")}
    assert names and names <= telepathy
    configure_stage(corrected, "base")
    assert not any(p.requires_grad for p in corrected.scene_correction.parameters())
    configure_stage(corrected, "sigma")
    assert all(p.requires_grad for p in corrected.scene_correction.parameters())

    corrected.train()
    losses = corrected.spec.train.losses
    objective = StageObjective(corrected, "sigma", losses, 10)
    torch.manual_seed(0)
    loss, row = objective([batch], 0)
    loss.backward()
    out = corrected(batch)
    want = state_loss(out.extras["corrected_state"], batch.environment_state, [1, 1, 0])
    assert row["L_scene"] == pytest.approx(want.item(), rel=1e-5)
    last = corrected.scene_correction.head[-1]
    assert last.weight.grad is not None and last.weight.grad.abs().sum() > 0
    blind = replace(batch, environment_state=None)  # data recorded without the scene state
    with pytest.raises(SigmaUserError, match=r"model.scene_correction trains on .* set model"):
        objective([blind], 0)
    # inference reads no privileged state and computes no training target
    corrected.eval()
    with torch.no_grad():
        assert "corrected_state" not in corrected(replace(batch, environment_state=None)).extras

    # a trained correction moves the tau pass only: a_0 (c_act_base) is unchanged
    with torch.no_grad():
        last.bias.add_(1.0)
        torch.manual_seed(0)
        moved = corrected(batch)
        torch.manual_seed(0)
        still = plain(batch)
    torch.testing.assert_close(moved.c_act_base, still.c_act_base)
    assert not torch.allclose(moved.actions.chunk, still.actions.chunk)
