"""sigma eval: intervals that cover, the report's files and schema, and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from sigma_core.errors import SigmaUserError
from sigma_core.eval import CLOSED_LOOP_COMPARED, SCHEMA, evaluate, paired_bootstrap, wilson
from sigma_core.plugins.registry import get_registry
from sigma_core.spec import validate_spec
from sigma_core.testing import CONTRACT_DIMS as D
from sigma_core.testing import write_synthetic_shards
from sigma_core.train import Trainer


def test_paired_bootstrap_covers_a_known_difference_at_about_the_nominal_rate():
    rng = np.random.default_rng(0)
    trials, covered, delta = 300, 0, 0.3
    for t in range(trials):
        base = rng.normal(1.0, 0.5, 25)  # per-episode means: episodes differ a lot ...
        other = base + delta + rng.normal(0, 0.2, 25)  # ... the paired difference less
        ci = paired_bootstrap(other, base, n_boot=2000, seed=t)
        covered += ci.low <= delta <= ci.high
    assert 0.90 <= covered / trials <= 0.99, covered / trials  # nominal 0.95; percentile CIs
    # run-to-run identical under a seed; the interval narrows with more episodes
    a, b = rng.normal(0, 1, 10), rng.normal(0, 1, 10)
    assert paired_bootstrap(a, b, seed=3) == paired_bootstrap(a, b, seed=3)


def test_wilson_interval_values():
    w = wilson(8, 10)
    assert (round(w.low, 4), round(w.high, 4)) == (0.4902, 0.9433)  # the textbook values
    assert wilson(0, 20).low == 0.0 and wilson(20, 20).high == 1.0


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    shards = write_synthetic_shards(
        root / "shards", D, episodes=8, frames=24, val_fraction=0.25, test_fraction=0.25
    )

    def spec(stage, **raw):
        body = {
            "model": {"dims": D.model_dump()},
            "data": {"batch_size": 4},
            "train": {"stage": stage, "steps": 2, "lr": 3e-3, "warmup_steps": 1},
            **raw,
        }
        return validate_spec(body, get_registry())

    Trainer(spec("base"), shards, root / "base", checkpoint_every=2).train()
    base = {"base_policy": {"type": "checkpoint", "path": str(root / "base" / "policy")}}
    Trainer(spec("sigma", **base), shards, root / "sigma", checkpoint_every=2).train()
    return root, shards


def test_eval_writes_the_papers_checks_and_a_versioned_report(trained):
    root, shards = trained
    report = evaluate([root / "sigma", root / "base"], shards, root / "report", plots=True)
    out = root / "report"
    names = {p.name for p in out.iterdir()}
    assert names == {
        "report.json",
        "report.md",
        "sigma_eval_checkA.json",
        "sigma_eval_checkB.json",
        "windows.jsonl",
        "plots",
    }
    assert {p.name for p in (out / "plots").iterdir()} == {
        "paired_episodes.png",
        "mse_by_scale.png",
    }
    assert report == json.loads((out / "report.json").read_text())
    assert report["schema"] == SCHEMA and report["split"] == "test"  # eval.split's default
    assert set(report["groups"]) == {"sigma", "sigma:no-adapter", "sigma:base", "base"}
    g = report["groups"]
    # the sigma run's frozen base is the base run: identical actions, window for window
    assert g["sigma:base"]["metrics"] == g["base"]["metrics"]
    assert g["sigma:no-adapter"]["metrics"]["adapter_scale"] == 1.0
    assert 0 <= g["sigma"]["metrics"]["adapter_scale"] <= 1
    assert g["sigma"]["stage"] == "sigma" and len(g["sigma"]["weights_sha256"]) == 64
    test_episodes = json.loads((shards / "meta.json").read_text())["split"]["test"]["episodes"]
    rows = [json.loads(r) for r in (out / "windows.jsonl").read_text().splitlines()]
    assert {r["episode"] for r in rows} == set(test_episodes)  # held-out episodes only
    pairs = {(c["a"], c["b"]) for c in report["comparisons"]}
    assert {("sigma", "sigma:base"), ("sigma", "sigma:no-adapter"), ("base", "sigma")} <= pairs
    c = next(
        c
        for c in report["comparisons"]
        if (c["a"], c["b"], c["metric"]) == ("base", "sigma", "mse_trj")
    )
    assert c["episodes"] == len(test_episodes)
    assert c["difference"]["low"] <= c["difference"]["estimate"] <= c["difference"]["high"]
    check_a = json.loads((out / "sigma_eval_checkA.json").read_text())
    assert check_a["sigma"] == check_a["sigma:no-adapter"] == check_a["sigma:base"]  # shared heads
    assert check_a["sigma"]["tensors"] > 0
    check_b = json.loads((out / "sigma_eval_checkB.json").read_text())
    assert {
        "group",
        "batch",
        "windows",
        "mse_vec",
        "mse_chk",
        "mse_trj",
        "tau_l2",
        "sem_align",
    } == set(check_b[0])
    assert "| sigma | sigma:base | mse_trj |" in (out / "report.md").read_text()


def _loop_summary(successes: list[bool], tcp: list[float]) -> dict:
    """A closed-loop summary as sigma_sim.rollout.summarize shapes it (seeds 0..n-1)."""
    n = len(successes)
    rate = wilson(sum(successes), n).as_dict()
    detail = [
        {
            "seed": i,
            "success": s,
            "reached": True,
            "grasped": s,
            "lifted": s,
            "wrong_object": False,
            "min_tcp_to_obj": tcp[i],
            "min_obj_to_goal": 0.05,
            "steps": 10,
            "seconds_to_success": 1.0 if s else None,
        }
        for i, s in enumerate(successes)
    ]
    stages = {k: rate for k in ("grasped", "lifted", "success")} | {
        "reached": wilson(n, n).as_dict()
    }
    return {
        "episodes": n,
        "successes": sum(successes),
        "success_rate": rate,
        "stages": stages,
        "wrong_object_rate": 0.0,
        "mean_min_tcp_to_obj": sum(tcp) / n,
        "mean_min_obj_to_goal": 0.05,
        "latency_ms": {"p50": 1.0, "p99": 2.0, "mean": 1.0, "max": 2.0},
        "episodes_detail": detail,
    }


def test_closed_loop_outcomes_are_compared_paired_by_seed(trained):
    """sigma succeeds on seeds 0-2, base on seed 0 only: sigma − base is exactly +0.5
    (paired differences 0, 1, 1, 0); the closest approach differs by -1 cm on every seed,
    so its interval is that single value."""
    root, shards = trained
    loops = {
        "sigma": _loop_summary([True, True, True, False], [0.01, 0.02, 0.03, 0.04]),
        "base": _loop_summary([True, False, False, False], [0.02, 0.03, 0.04, 0.05]),
    }
    seen = []

    def closed_loop(source, meta):
        seen.append((source.name, meta["format"]))
        return loops[source.name]

    out = root / "report-loop"
    report = evaluate(
        [root / "sigma", root / "base"], shards, out, plots=True, closed_loop=closed_loop
    )
    assert seen == [("sigma", "sigma-shards/1"), ("base", "sigma-shards/1")]
    assert report["closed_loop"] == loops
    diffs = {(c["a"], c["b"], c["metric"]): c for c in report["closed_loop_comparisons"]}
    assert set(diffs) == {("base", "sigma", m) for m in CLOSED_LOOP_COMPARED}
    success = diffs[("base", "sigma", "success")]
    assert success["episodes"] == 4
    assert success["difference"]["estimate"] == pytest.approx(-0.5)
    assert success["difference"]["low"] <= -0.5 <= success["difference"]["high"]
    tcp = diffs[("base", "sigma", "min_tcp_to_obj")]["difference"]
    assert [tcp["estimate"], tcp["low"], tcp["high"]] == pytest.approx([0.01] * 3)
    assert (out / "plots" / "closed_loop.png").is_file()
    md = (out / "report.md").read_text()
    assert "| sigma | 4 | 100% [" in md and "| base | sigma | success | -0.5 |" in md


def test_eval_bad_input_is_clear(trained, tmp_path):
    root, shards = trained
    with pytest.raises(SigmaUserError, match=r"no saved policy \(sigma.json missing\)"):
        evaluate([tmp_path], shards, tmp_path / "r1")
    other = write_synthetic_shards(
        tmp_path / "wide", D.model_copy(update={"action_dim": 7}), episodes=4, frames=24
    )
    with pytest.raises(SigmaUserError, match=r"does not match the spec's model.dims: action_dim"):
        evaluate([root / "base"], other, tmp_path / "r2")
    none = write_synthetic_shards(tmp_path / "none", D, episodes=4, frames=24, test_fraction=0)
    with pytest.raises(SigmaUserError, match="the split has no episodes"):
        evaluate([root / "base"], none, tmp_path / "r3")
    assert not (tmp_path / "r1").exists() and not (tmp_path / "r3").exists()
    # the same episodes split otherwise: its test split holds episodes the runs trained on
    resplit = write_synthetic_shards(
        tmp_path / "resplit",
        D,
        episodes=8,
        frames=24,
        val_fraction=0.25,
        test_fraction=0.5,
        split_seed=5,
    )
    with pytest.raises(SigmaUserError, match=r"episodes \[.*\] of this split were in .*training"):
        evaluate([root / "sigma"], resplit, tmp_path / "r4")
    trained_on = json.loads((root / "sigma" / "policy" / "sigma.json").read_text())["trained_on"]
    assert trained_on["meta_sha256"] and trained_on["train_episodes"]


def test_image_reliance_is_zero_exactly_when_the_plan_ignores_the_cameras(trained, tmp_path):
    """A copy of the base whose patch embedding is zeroed cannot see its images: its
    image_reliance is 0; the trained base's is positive."""
    from sigma_core.model.policy import SigmaPolicy

    root, shards = trained
    blind = SigmaPolicy.from_pretrained(root / "base" / "policy")
    with torch.no_grad():
        for p in blind.vision.patch.parameters():
            p.zero_()
    blind.save_pretrained(tmp_path / "blind")
    report = evaluate([root / "base", tmp_path / "blind"], shards, tmp_path / "r", plots=False)
    assert report["groups"]["blind"]["metrics"]["image_reliance"] == 0.0
    assert report["groups"]["base"]["metrics"]["image_reliance"] > 0.0
    rows = [json.loads(r) for r in (tmp_path / "r" / "windows.jsonl").read_text().splitlines()]
    assert all(r["image_reliance"] >= 0 for r in rows)


def test_image_reliance_swaps_in_the_next_episode_at_the_same_step():
    from sigma_core.eval.replay import swapped_windows

    # episode 2 is shorter: its last window stands in; the last episode wraps to the first
    assert swapped_windows({0: [10, 11, 12], 2: [20, 21], 5: [30]}) == {
        10: 20,
        11: 21,
        12: 21,
        20: 30,
        21: 30,
        30: 10,
    }
    assert swapped_windows({3: [1, 2, 3, 4]}) == {1: 3, 2: 4, 3: 1, 4: 2}  # alone: half later


def test_missing_matplotlib_is_reported_before_any_compute(tmp_path, monkeypatch):
    """--plots without matplotlib fails first, not after a finished evaluation."""
    import sys

    from sigma_core.eval.report import evaluate

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(SigmaUserError, match="plots need matplotlib"):
        evaluate([tmp_path / "no-such-run"], tmp_path / "no-shards", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with pytest.raises(SigmaUserError, match="no-such-run"):  # --no-plots: on to the real work
        evaluate([tmp_path / "no-such-run"], tmp_path / "no-shards", tmp_path / "out", plots=False)
