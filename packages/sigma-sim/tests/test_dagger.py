"""Closed-loop refits: estimator DAgger (:mod:`sigma_sim.dagger`, ``sigma dagger``),
declutter (:mod:`sigma_sim.declutter`, ``sigma declutter``) and the rollout's ``on_plan``.

A tiny camera-only base (32 px, random weights) on 3 recorded demonstrations; every
closed-loop episode lasts at most 0.3 simulated seconds and every refit a few steps.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from sim_checks import assert_first_cube

from sigma_core import SigmaUserError

CAMERAS = ["overhead", "wrist"]


@pytest.fixture(scope="module", autouse=True)
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory, three_demos: dict[str, Any]) -> Path:
    """3 recorded 32 px demonstrations (conftest.py), one held out for val."""
    from sigma_core.data import PreprocessOptions, preprocess
    from sigma_lerobot.dataset import LeRobotSource

    out = tmp_path_factory.mktemp("dagger") / "shards"
    opts = PreprocessOptions(
        cameras=CAMERAS, image_size=32, horizon=8, chunk=4, val_fraction=0.34, test_fraction=0
    )
    preprocess(LeRobotSource(str(three_demos["path"]), CAMERAS), out, opts)
    return out


def _spec(shards: Path, scene_state: str) -> Any:
    from sigma_core import get_registry, validate_spec

    meta = json.loads((shards / "meta.json").read_text())
    width = len(meta["stats"]["observation.environment_state"]["mean"])
    dims = {"d_model": 32, "image_size": 32, "chunk_horizon": 4, "horizon": 8}
    dims |= {"cameras": CAMERAS, "environment_state_dim": width}
    if scene_state == "estimated":
        dims["auxiliary_state_dim"] = width
    raw = {"model": {"dims": dims, "scene_state": scene_state}, "train": {"stage": "base"}}
    return validate_spec(raw, get_registry())


@pytest.fixture(scope="module")
def base(shards: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A camera-only base (random weights), saved as ``sigma train`` saves one."""
    from sigma_core import build_policy

    torch.manual_seed(0)
    where = tmp_path_factory.mktemp("base") / "policy"
    build_policy(_spec(shards, "estimated")).save_pretrained(where)
    return where


def test_on_plan_hands_over_the_truth_the_camera_only_policy_does_not_read(shards, base) -> None:
    """on_plan sees every planning step's batch with the normalized scene truth; the
    camera-only policy acts exactly as without it (it never reads the truth)."""
    from sigma_core import SigmaPolicy
    from sigma_sim.rollout import rollout

    meta = json.loads((shards / "meta.json").read_text())
    policy = SigmaPolicy.from_pretrained(base)
    seen: list[Any] = []
    told = rollout(policy, meta, 2, max_seconds=0.3, on_plan=seen.append)
    blind = rollout(policy, meta, 2, max_seconds=0.3)
    assert [r.as_dict() | {"latencies": 0, "sim_seconds": 0} for r in told] == [
        r.as_dict() | {"latencies": 0, "sim_seconds": 0} for r in blind
    ]
    stride = told[0].n_action_steps
    assert len(seen) == sum(-(-r.steps // stride) for r in told)  # one per plan
    width = policy.dims.environment_state_dim
    assert all(b.environment_state.shape == (1, width) for b in seen)
    assert_first_cube(meta, seen[0].environment_state)
    with pytest.raises(SigmaUserError, match="on_plan records in this process: workers must be 1"):
        rollout(policy, meta, 2, max_seconds=0.3, on_plan=seen.append, workers=2)


def _weights(directory: Path) -> dict[str, torch.Tensor]:
    return load_file(str(directory / "model.safetensors"))


def test_estimator_dagger_refits_the_estimator_and_resumes_to_the_same_weights(
    shards, base, tmp_path, monkeypatch
) -> None:
    from sigma_core import SigmaPolicy
    from sigma_core.train import configure_stage, telepathy_parameter_names
    from sigma_sim import dagger
    from sigma_sim.dagger import LOG_FILE, estimator_dagger

    settings = {"episodes": 2, "steps": 3, "max_seconds": 0.3}
    straight = estimator_dagger(base, shards, tmp_path / "a", rounds=2, log=None, **settings)
    assert [r["round"] for r in straight] == [0, 1]
    assert [r["seeds"] for r in straight] == [[20_000, 20_001], [20_002, 20_003]]
    assert straight[1]["aggregate"] > straight[0]["aggregate"] > 0  # every round's states
    before, after = _weights(base), _weights(tmp_path / "a" / "round_1")
    moved = {k for k in before if not torch.equal(before[k], after[k])}
    assert any(k.startswith("auxiliary_state.") for k in moved)  # the estimator
    assert any(k.startswith("vision.") for k in moved)
    policy = SigmaPolicy.from_pretrained(tmp_path / "a" / "round_1")
    configure_stage(policy, "base")
    assert moved <= {n for n, p in policy.named_parameters() if p.requires_grad}
    assert not moved & set(telepathy_parameter_names(policy))  # the pathway: untouched
    assert policy.spec.model.scene_state == "estimated"  # never reads the truth

    # killed after round 0, rerun with the same command: the same weights as straight
    estimator_dagger(base, shards, tmp_path / "b", rounds=1, log=None, **settings)
    resumed = estimator_dagger(base, shards, tmp_path / "b", rounds=2, log=None, **settings)
    assert [r["round"] for r in resumed] == [0, 1]
    for k, v in _weights(tmp_path / "a" / "round_1").items():
        assert torch.equal(v, _weights(tmp_path / "b" / "round_1")[k]), k
    monkeypatch.setattr(dagger, "visit", None)  # nothing left to do: no closed loop runs
    again = estimator_dagger(base, shards, tmp_path / "b", rounds=2, log=None, **settings)
    assert again == resumed
    monkeypatch.undo()

    with pytest.raises(
        SigmaUserError, match=r"round 0 was made with other settings \(steps 3 -> 4"
    ):
        estimator_dagger(
            base, shards, tmp_path / "b", rounds=3, log=None, **settings | {"steps": 4}
        )
    log = tmp_path / "b" / LOG_FILE
    rows = json.loads(log.read_text())
    rows[0]["rollout_success"] = 1.0  # not what the closed loop replays
    log.write_text(json.dumps(rows))
    with pytest.raises(SigmaUserError, match=r"dagger.json: round 0's closed loop replays at 0%"):
        estimator_dagger(base, shards, tmp_path / "b", rounds=3, log=None, **settings)


def test_estimator_dagger_refuses_a_base_that_reads_the_truth(shards, tmp_path) -> None:
    from sigma_core import build_policy
    from sigma_sim.dagger import estimator_dagger

    oracle = tmp_path / "oracle"
    build_policy(_spec(shards, "observed")).save_pretrained(oracle)
    with pytest.raises(SigmaUserError, match=r"oracle: estimator DAgger needs a camera-only base"):
        estimator_dagger(oracle, shards, tmp_path / "out", rounds=1, log=None)
    with pytest.raises(SigmaUserError, match="episodes must be >= 1, got 0"):
        estimator_dagger(oracle, shards, tmp_path / "out", episodes=0, log=None)
    with pytest.raises(SigmaUserError, match=r"nowhere: not a policy directory \(no sigma.json\)"):
        estimator_dagger(tmp_path / "nowhere", shards, tmp_path / "out", log=None)
    with pytest.raises(SigmaUserError, match=r"nowhere: no such shard directory"):
        estimator_dagger(oracle, tmp_path / "nowhere", tmp_path / "out", log=None)


@pytest.fixture(scope="module")
def cluttered(shards: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shards with their recording's scene edited to one distractor cube."""
    import shutil

    out = tmp_path_factory.mktemp("cluttered") / "shards"
    shutil.copytree(shards, out)
    meta = json.loads((out / "meta.json").read_text())
    meta["source"]["recording"]["config"]["distractors"] = 1
    (out / "meta.json").write_text(json.dumps(meta))
    return out


@pytest.fixture(scope="module")
def sigma_tau_stem(shards: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Sigma policy (stage sigma, random weights) whose tau pass has a tau stem."""
    from sigma_core import build_policy, get_registry, validate_spec

    raw = _spec(shards, "estimated").model_dump(mode="json")
    raw["model"]["vision"] |= {"stem_channels": [4, 8], "film": False, "tau_stem": True}
    raw["train"]["stage"] = "sigma"
    torch.manual_seed(0)
    where = tmp_path_factory.mktemp("sigma") / "policy"
    build_policy(validate_spec(raw, get_registry())).save_pretrained(where)
    return where


def test_on_plan_gets_the_same_instant_without_the_distractors(cluttered, base) -> None:
    """uncluttered: on_plan also gets the cameras re-rendered with the distractor cubes
    transparent: the same scene where they are not, and the episode runs as without it."""
    from sigma_core import SigmaPolicy
    from sigma_sim.rollout import rollout

    meta = json.loads((cluttered / "meta.json").read_text())
    policy = SigmaPolicy.from_pretrained(base)
    seen: list[tuple[Any, torch.Tensor]] = []
    told = rollout(
        policy, meta, 2, max_seconds=0.3, on_plan=lambda b, c: seen.append((b, c)), uncluttered=True
    )
    plain = rollout(policy, meta, 2, max_seconds=0.3)
    assert [r.as_dict() | {"latencies": 0, "sim_seconds": 0} for r in told] == [
        r.as_dict() | {"latencies": 0, "sim_seconds": 0} for r in plain
    ]
    assert told[0].distractors == 1
    for batch, clean in seen:
        assert clean.shape == batch.images.shape and clean.dtype == batch.images.dtype
        differ = (clean - batch.images).abs().amax(dim=3) > 0.02  # (1, C, 1, P, P) pixels
        overhead = differ[0, 0, 0].float().mean().item()
        assert 0 < overhead < 0.2  # the distractor's pixels only (a 32 px overhead view)
    with pytest.raises(SigmaUserError, match="uncluttered renders for on_plan: pass on_plan"):
        rollout(policy, meta, 1, max_seconds=0.1, uncluttered=True)


def test_declutter_trains_the_tau_stem_only_and_reads_its_visits_back(
    cluttered, sigma_tau_stem, tmp_path, monkeypatch
) -> None:
    from sigma_core import SigmaPolicy
    from sigma_sim import declutter as module
    from sigma_sim.declutter import declutter

    settings = {"episodes": 2, "steps": 3, "max_seconds": 0.3, "seed": 70_000}
    record = declutter(sigma_tau_stem, cluttered, tmp_path / "a", **settings)
    assert record["states"] > 0 and record["visit_success"] == 0.0
    assert [r["step"] for r in record["loss"]] == [0, 2]
    before, after = _weights(sigma_tau_stem), _weights(tmp_path / "a" / "policy")
    moved = {k for k in before if not torch.equal(before[k], after[k])}
    assert moved and all(k.startswith("vision.stem_tau.") for k in moved)
    policy = SigmaPolicy.from_pretrained(tmp_path / "a" / "policy")  # same spec, loads
    assert policy.spec.model.scene_state == "estimated" and policy.vision.tau_sees_pixels

    monkeypatch.setattr(module, "visit", None)  # done: nothing runs again
    assert declutter(sigma_tau_stem, cluttered, tmp_path / "a", **settings) == record
    # killed after the visits: the rerun reads them back and fits to the same weights
    (tmp_path / "a" / "declutter.json").unlink()
    again = declutter(sigma_tau_stem, cluttered, tmp_path / "a", **settings)
    assert again["states"] == record["states"] and again["loss"] == record["loss"]
    for k, v in after.items():
        assert torch.equal(v, _weights(tmp_path / "a" / "policy")[k]), k
    with pytest.raises(SigmaUserError, match=r"declutter.json: made with other settings"):
        declutter(sigma_tau_stem, cluttered, tmp_path / "a", **settings | {"steps": 4})
    (tmp_path / "a" / "declutter.json").unlink()
    with pytest.raises(SigmaUserError, match=r"visited.safetensors: visits made with other"):
        declutter(sigma_tau_stem, cluttered, tmp_path / "a", **settings | {"episodes": 3})


def test_declutter_refuses_what_it_cannot_declutter(shards, cluttered, base, tmp_path) -> None:
    from sigma_sim.declutter import declutter

    with pytest.raises(SigmaUserError, match=r"no distractor cubes, so there is nothing"):
        declutter(base, shards, tmp_path / "out")
    with pytest.raises(SigmaUserError, match=r"policy: declutter trains the tau pass of a Sigma"):
        declutter(base, cluttered, tmp_path / "out")
    with pytest.raises(SigmaUserError, match=r"nowhere: not a policy directory"):
        declutter(tmp_path / "nowhere", cluttered, tmp_path / "out")
    with pytest.raises(SigmaUserError, match="steps must be >= 1, got 0"):
        declutter(base, cluttered, tmp_path / "out", steps=0)


def test_declutter_also_visits_scenes_with_nothing_to_remove(
    shards, cluttered, sigma_tau_stem, tmp_path
) -> None:
    """--also: one-cube scenes visited too (seeds SEED + 10000 on), their uncluttered
    render the image itself, fitted with the rest."""
    from safetensors import safe_open

    from sigma_sim.declutter import VISITED_ALSO, declutter

    settings = {"episodes": 1, "steps": 2, "max_seconds": 0.3, "seed": 70_000}
    alone = declutter(sigma_tau_stem, cluttered, tmp_path / "a", **settings)
    both = declutter(
        sigma_tau_stem, cluttered, tmp_path / "b", also=shards, also_episodes=1, **settings
    )
    with safe_open(str(tmp_path / "b" / VISITED_ALSO), framework="pt") as f:
        extra = {k: f.get_tensor(k) for k in ("images", "clean")}
        assert json.loads(f.metadata()["settings"])["seed"] == 80_000
    assert torch.equal(extra["images"], extra["clean"])  # nothing to remove
    assert both["states"] == alone["states"] + len(extra["images"])
    assert both["settings"]["also"]["shards"] == str(shards)


def test_before_contact_keeps_each_episodes_plans_until_its_cube_first_moves() -> None:
    from types import SimpleNamespace

    from sigma_core.train import VisitedStates
    from sigma_sim.dagger import before_contact

    # three episodes of 3, 2 and 4 plans (ceil(steps / n_action_steps)); the cube's
    # (x, y) per plan: plan 0 may still be settling, plan 1 is the reference
    xy = [(0, 0), (1, 1), (1.5, 1)]  # moved by 0.25 at plan 2
    xy += [(2, 2), (2.2, 2.1)]  # moved by 0.05: never
    xy += [(0, 0), (0, 0), (0, 0.5), (0, 0)]  # moved at plan 2, back at plan 3
    truth = torch.zeros(len(xy), 20)
    truth[:, :2] = torch.tensor(xy)
    n = len(xy)
    visited = VisitedStates(torch.arange(n).view(n, 1, 1, 1, 1, 1).half(), torch.zeros(n, 6), truth)
    results = [SimpleNamespace(steps=s, n_action_steps=8) for s in (20, 16, 25)]
    kept = before_contact(visited, results)
    assert kept.images.flatten().tolist() == [0, 1, 3, 4, 5, 6]
    assert torch.equal(kept.truth, truth[[0, 1, 3, 4, 5, 6]])
    with pytest.raises(ValueError, match="9 visited plans, but the episodes planned 8 times"):
        before_contact(visited, [*results[:2], SimpleNamespace(steps=24, n_action_steps=8)])


def test_estimator_dagger_before_contact_refits_on_fewer_plans_and_keeps_its_setting(
    shards, base, tmp_path
) -> None:
    from sigma_sim.dagger import estimator_dagger

    settings = {"episodes": 2, "steps": 2, "max_seconds": 0.3}
    every = estimator_dagger(base, shards, tmp_path / "all", rounds=1, log=None, **settings)
    approach = estimator_dagger(
        base, shards, tmp_path / "near", rounds=1, log=None, keep="before-contact", **settings
    )
    assert approach[0]["keep"] == "before-contact" and every[0]["keep"] == "all"
    assert approach[0]["rollout_success"] == every[0]["rollout_success"]  # the same loop
    assert 0 < approach[0]["aggregate"] <= every[0]["aggregate"]
    with pytest.raises(SigmaUserError, match=r"other settings \(keep before-contact -> all\)"):
        estimator_dagger(base, shards, tmp_path / "near", rounds=2, log=None, **settings)
    with pytest.raises(SigmaUserError, match="keep must be one of all, before-contact"):
        estimator_dagger(base, shards, tmp_path / "x", log=None, keep="after")  # type: ignore[arg-type]
