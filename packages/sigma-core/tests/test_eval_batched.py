"""sigma eval's replay in batches of episodes: the one-episode replay's numbers, one policy
in memory at a time, and the device choice."""

from __future__ import annotations

import gc
import weakref
from dataclasses import replace

import pytest
import torch

from sigma_core.data import ActionSpace, ShardDataset, collate
from sigma_core.errors import SigmaUserError
from sigma_core.eval import (
    CLOSED_LOOP_COMPARED,
    evaluate,
    open_source,
    replay,
    replay_source,
    resolve_device,
    wilson,
)
from sigma_core.eval.replay import swapped_windows
from sigma_core.model.policy import SigmaPolicy, build_policy
from sigma_core.plugins.registry import get_registry
from sigma_core.spec import validate_spec
from sigma_core.testing import CONTRACT_DIMS as D
from sigma_core.testing import write_synthetic_shards

#: episode lengths (frames): the held-out episodes have different numbers of windows
LENGTHS = (20, 31, 24, 40, 22, 35, 27, 44)
TASKS = ("pick up the red cube", "go", "place the small green cube on the far blue circle")


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Untrained policies with a flow sampler (random noise matters) and relative actions:
    a base, and a stage-sigma policy on top of it (the base's draws come after its own)."""
    root = tmp_path_factory.mktemp("batched")
    shards = write_synthetic_shards(
        root / "shards",
        D,
        episodes=len(LENGTHS),
        frames=LENGTHS,
        tasks=TASKS,
        val_fraction=0,
        test_fraction=0.75,
    )

    def save(stage, where, **raw):
        body = {
            "model": {"dims": D.model_dump(), "trajectory": {"type": "flow-dit"}},
            "data": {"actions": "relative", "run_stride": 3},
            "train": {"stage": stage},
            **raw,
        }
        build_policy(validate_spec(body, get_registry())).save_pretrained(where)
        return where

    base = save("base", root / "base")
    sigma = save("sigma", root / "sigma", base_policy={"type": "checkpoint", "path": str(base)})
    return root, shards, base, sigma


def one_at_a_time(directory, ds: ShardDataset, stride: int, seed: int) -> dict:
    """The replay before batching (one episode, one window per forward, noise drawn by
    ``torch.randn`` per forward): (episode, frame, group) -> metrics."""
    p = SigmaPolicy.from_pretrained(directory).eval()
    telepathy = p.spec.train.stage == "sigma"
    space = ActionSpace(p.spec.data.actions, ds.meta["stats"])
    episodes = ds.episode_runs(stride)
    swap = swapped_windows(episodes)
    name = directory.name
    mse = lambda a, b: (a - b).pow(2).mean().item()  # noqa: E731

    def groups(out, state):
        if not telepathy:
            found = {name: (out.actions, 0.0, 0.0, 0.0)}
        else:
            it = out.intent
            tau = out.tau.norm(dim=-1).item()
            sem = torch.nn.functional.cosine_similarity(it.z_pool, it.c_text + it.c_env).item()
            adapted, diag = p.adapt(out)
            found = {
                name: (adapted, tau, sem, diag.scale.item()),
                f"{name}:no-adapter": (out.actions, tau, sem, 1.0),
                f"{name}:base": (out.base, 0.0, 0.0, 0.0),
            }
        return {g: (a.map(lambda x: space.decode(x, state)), *e) for g, (a, *e) in found.items()}

    rows = {}
    with torch.no_grad():
        for episode, windows in episodes.items():
            m = None
            for k, i in enumerate(windows):
                batch = collate([ds[i]])
                torch.manual_seed(seed + k)
                out = p(batch, m, telepathy=telepathy)
                torch.manual_seed(seed + k)
                seen = replace(batch, images=collate([ds[swap[i]]]).images)
                other = groups(p(seen, m, telepathy=telepathy), batch.state)
                m = out.intent.m_t
                t, norm = batch.targets, ds.action_norm
                for g, (a, tau, sem, scale) in groups(out, batch.state).items():
                    rows[(episode, k, g)] = {
                        "mse_vec": mse(a.vector, t.vector),
                        "mse_chk": mse(a.chunk, t.chunk),
                        "mse_trj": mse(a.trajectory, t.trajectory),
                        "mse_trj_units": mse(
                            norm.denormalize(a.trajectory), norm.denormalize(t.trajectory)
                        ),
                        "tau_l2": tau,
                        "sem_align": sem,
                        "adapter_scale": scale,
                        "image_reliance": mse(other[g][0].trajectory, a.trajectory),
                    }
    return rows


def test_batched_replay_equals_the_one_episode_replay(saved):
    _, shards, base, sigma = saved
    seed, stride = 3, 3
    ds = ShardDataset(shards, split="test")
    episodes = ds.episode_runs(stride)
    assert len({len(w) for w in episodes.values()}) >= 4  # lengths differ: some drop out early
    reference = one_at_a_time(sigma, ds, stride, seed) | one_at_a_time(base, ds, stride, seed)
    for per_batch in (1, 4, len(episodes)):
        rows = replay(
            [open_source(sigma), open_source(base)],
            ds,
            stride,
            seed,
            episodes_per_batch=per_batch,
        )
        # the same rows, in the same order (episode, frame, group within each source)
        assert [(r["episode"], r["frame"], r["group"]) for r in rows] == list(reference)
        for r in rows:
            want = reference[(r["episode"], r["frame"], r["group"])]
            for metric, value in want.items():
                assert r[metric] == pytest.approx(value, rel=1e-5, abs=1e-6), (per_batch, r)
    # the sampler noise matters here (else the test above could not see it drawn wrongly)
    torch.manual_seed(0)
    one = SigmaPolicy.from_pretrained(base).eval()
    batch = collate([ds[0]])
    with torch.no_grad():
        a, b = one(batch).actions.trajectory, one(batch).actions.trajectory
    assert not torch.equal(a, b)


def test_the_memory_is_carried_per_episode(saved):
    """Dropping the memory changes the sigma rows: the equality above covers how it is carried."""
    _, shards, _, sigma = saved
    ds = ShardDataset(shards, split="test")
    rows = replay([open_source(sigma)], ds, 3, 0, episodes_per_batch=8)
    forgetful = open_source(sigma)
    with forgetful.loaded():
        m0 = forgetful.policy.memory
        forgetful.policy.intent.forward = _without_memory(forgetful.policy.intent.forward, m0)
        other = replay_source(forgetful, ds, 3, 0, episodes_per_batch=8)
    later = [(a, b) for a, b in zip(rows, other, strict=True) if a["frame"] > 0]
    assert later and any(a["tau_l2"] != b["tau_l2"] for a, b in later)
    first = [(a, b) for a, b in zip(rows, other, strict=True) if a["frame"] == 0]
    assert all(a["tau_l2"] == pytest.approx(b["tau_l2"], rel=1e-6) for a, b in first)


def _without_memory(forward, memory):
    def call(hidden, mask, m_prev, mem):
        return forward(hidden, mask, memory.initial_state(hidden.shape[0], hidden.device), mem)

    return call


def test_policies_are_loaded_one_at_a_time(saved, monkeypatch):
    root, shards, base, sigma = saved
    loaded: list[weakref.ref] = []
    real = SigmaPolicy.from_pretrained.__func__
    alive_at_load = []

    def tracking(cls, directory, *args, **kwargs):
        gc.collect()
        alive_at_load.append(sum(r() is not None for r in loaded))
        policy = real(cls, directory, *args, **kwargs)
        loaded.append(weakref.ref(policy))
        return policy

    monkeypatch.setattr(SigmaPolicy, "from_pretrained", classmethod(tracking))
    seen = []

    def closed_loop(source, meta):
        seen.append((source.name, type(source.policy).__name__))  # loaded while it runs
        rate = wilson(1, 2).as_dict()
        return {
            "episodes": 2,
            "success_rate": rate,
            "wrong_object_rate": 0.0,
            "latency_ms": {"p50": 1.0, "p99": 2.0},
            "episodes_detail": [
                dict.fromkeys(CLOSED_LOOP_COMPARED, 0.0) | {"seed": s, "success": s == 1}
                for s in range(2)
            ],
        }

    report = evaluate(
        [sigma, base, sigma], shards, root / "report", plots=False, closed_loop=closed_loop
    )
    # sigma (+ its base inside), base, sigma again (+ its base): nothing alive at each top load
    assert alive_at_load == [0, 0, 0, 0, 0]
    gc.collect()
    assert all(r() is None for r in loaded)  # all freed at the end
    assert seen == [
        ("0:sigma", "SigmaPolicy"),
        ("1:base", "SigmaPolicy"),
        ("2:sigma", "SigmaPolicy"),
    ]
    g = report["groups"]
    assert g["0:sigma"]["metrics"] == g["2:sigma"]["metrics"]  # the same policy twice
    assert {(c["a"], c["b"]) for c in report["comparisons"]} >= {("1:base", "0:sigma")}
    # the closed-loop comparisons read the kept per-seed outcomes, not the models
    success = {(c["a"], c["metric"]): c for c in report["closed_loop_comparisons"]}
    assert success[("1:base", "success")]["episodes"] == 2


def test_device_choice():
    assert resolve_device("cpu") == torch.device("cpu")
    want = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == want
    with pytest.raises(SigmaUserError, match=r"--device 'tpu': choose one of auto, cpu, cuda"):
        resolve_device("tpu")
    with pytest.raises(SigmaUserError, match="choose one of"):
        resolve_device("cpu:1")
    if not torch.cuda.is_available():
        with pytest.raises(SigmaUserError, match="--device cuda: no CUDA device is visible"):
            resolve_device("cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_replay_on_cuda(saved):
    """On the GPU: batched equals one episode at a time there, and both are near the CPU's
    (cuDNN's TF32 convolutions differ from the CPU by more than rounding)."""
    _, shards, _, sigma = saved
    ds = ShardDataset(shards, split="test")

    def run(device, per_batch):
        return replay([open_source(sigma)], ds, 3, 1, device=device, episodes_per_batch=per_batch)

    cpu, one, batched = run("cpu", 8), run("cuda", 1), run("cuda", 8)
    for c, o, b in zip(cpu, one, batched, strict=True):
        assert (c["episode"], c["frame"], c["group"]) == (b["episode"], b["frame"], b["group"])
        for metric in ("mse_vec", "mse_trj", "tau_l2", "image_reliance"):
            assert b[metric] == pytest.approx(o[metric], rel=1e-5, abs=1e-6), (metric, b)
            assert b[metric] == pytest.approx(c[metric], rel=1e-2, abs=1e-4), (metric, b)
