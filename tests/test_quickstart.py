"""sigma quickstart --smoke: every stage of the embedded default, its report field by field."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from sigma_cli.quickstart import TASK
from sigma_core.eval import METRICS


def quickstart(out, *extra):
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "sigma_cli",
            "quickstart",
            "--smoke",
            "--out",
            str(out),
            "--json",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "COLUMNS": "200", "HF_HUB_OFFLINE": "1"},
    )
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    return tmp_path_factory.mktemp("quickstart") / "qs"


def test_smoke_runs_every_stage_and_reports_the_comparison(smoke):
    summary = quickstart(smoke, "--transfer")
    assert set(summary["seconds"]) == {
        "base demonstrations",
        "base preprocess",
        "train base",
        "continue base",
        "base DAgger",
        "base approach DAgger",
        "demonstrations",
        "preprocess",
        "train sigma",
        "train lora-only",
        "eval",
        "transfer demonstrations",
        "transfer preprocess",
        "transfer train sigma",
        "transfer train lora-only",
        "transfer train base-longer",
        "transfer train sigma-declutter",
        "transfer declutter",
        "transfer eval",
    }
    assert summary["demonstrations"]["episodes"] == 4
    groups = summary["groups"]
    assert {"base", "sigma", "sigma:base", "sigma:no-adapter", "lora-only"} <= set(groups)
    for g, metrics in groups.items():
        assert set(metrics) == set(METRICS), g
        assert all((v == v and v >= 0) or k == "sem_align" for k, v in metrics.items()), g
    # Sigma's and the LoRA-only control's frozen bases are the base run, window for window
    assert groups["sigma:base"] == groups["base"] == groups["lora-only:base"]
    assert groups["lora-only"]["tau_l2"] == 0.0  # the control has no tau
    assert groups["sigma"]["tau_l2"] > 0
    pairs = {(c["a"], c["b"]) for c in summary["comparisons"]}
    assert pairs == {
        ("sigma", "sigma:base"),
        ("lora-only", "lora-only:base"),
        ("lora-only", "sigma"),
        ("base", "sigma"),
    }
    loop = summary["closed_loop"]
    assert set(loop) == {"sigma", "lora-only", "base"}
    for c in loop.values():  # one closed-loop episode each in the simulator
        assert c["episodes"] == 1 and 0 <= c["success_rate"]["estimate"] <= 1
        assert c["success_rate"]["low"] <= c["success_rate"]["high"] and c["steps"] > 0
        assert c["latency_ms"]["p99"] > 0 and c["distractors"] == 0
        assert list(c["stages"]) == ["reached", "grasped", "lifted", "success"]
        assert [e["seed"] for e in c["episodes_detail"]] == [10_000]
    loop_pairs = {(c["a"], c["b"]) for c in summary["closed_loop_comparisons"]}
    assert loop_pairs == {("lora-only", "sigma"), ("base", "sigma")}
    assert summary["task"] == TASK
    transfer = summary["transfer"]
    assert transfer["demonstrations"]["episodes"] == 4
    assert transfer["demonstrations"]["distractors"] == 2
    assert set(transfer["closed_loop"]) == {
        "sigma",
        "lora-only",
        "base-longer",
        "declutter",
        "base",
    }
    for c in transfer["closed_loop"].values():  # the recording's distractors, by default
        assert c["distractors"] == 2 and 0 <= c["wrong_object_rate"] <= 1
    assert {"sigma:base", "lora-only:base", "base-longer"} <= set(transfer["groups"])
    # Sigma and the LoRA-only control sit on the clean-scene base, frozen
    assert transfer["groups"]["sigma:base"] == transfer["groups"]["base"]
    assert transfer["groups"]["base-longer"] != transfer["groups"]["base"]
    tpairs = {(c["a"], c["b"]) for c in transfer["comparisons"]}
    assert {("sigma", "sigma:base"), ("base-longer", "sigma"), ("base", "sigma")} <= tpairs
    for c in summary["comparisons"]:
        d = c["difference"]
        assert d["low"] <= d["estimate"] <= d["high"] and c["episodes"] >= 1
    root = smoke
    for path in (
        "runs/base/policy",
        "runs/sigma/policy",
        "runs/lora-only/policy",
        "eval/report.md",
        "eval/plots/closed_loop.png",
        "eval-transfer/report.md",
        "runs/transfer/base-longer/policy",
        "runs/transfer/declutter/policy",
        "runs/transfer/declutter/declutter.json",
        "eval/sigma_eval_checkA.json",
        "eval/sigma_eval_checkB.json",
        "quickstart.json",
    ):
        assert (root / path).exists(), path
    assert json.loads((root / "quickstart.json").read_text()) == summary
    # --smoke trains its base (the shipped one is 96 px) on its own demonstrations
    assert summary["base"]["demonstrations"]["episodes"] == 4
    base_meta = json.loads((root / "runs/base/policy/sigma.json").read_text())
    assert base_meta["spec"]["model"]["scene_state"] == "estimated"
    assert base_meta["spec"]["train"]["teacher_forcing"] == 1.0  # trained on the truth only
    # the base is the continued base after its estimator DAgger, then DAgger on the
    # approach only from its last round: that last round, copied
    dagger = json.loads((root / "base-dagger/dagger.json").read_text())
    assert [r["round"] for r in dagger] == [0] and dagger[0]["aggregate"] > 0
    assert dagger[0]["keep"] == "all"
    approach = json.loads((root / "base-approach/dagger.json").read_text())
    assert [(r["round"], r["keep"]) for r in approach] == [(0, "before-contact")]
    assert approach[0]["seeds"][0] == 40_000  # disjoint from the first rounds' seeds
    first = (root / "base-dagger/round_0/model.safetensors").read_bytes()
    last = (root / "base-approach/round_0/model.safetensors").read_bytes()
    assert last != first  # the approach rounds refitted it
    assert (root / "runs/base/policy/model.safetensors").read_bytes() == last
    continued = root / "runs/base-continued/policy/model.safetensors"
    assert continued.read_bytes() != first
    assert (
        base_meta["trained_on"]
        == json.loads((root / "runs/base-continued/policy/sigma.json").read_text())["trained_on"]
    )  # sigma eval still refuses the windows the base trained on
    # Sigma's shards are normalized with the base's statistics, and no episode of them
    # is one the base was trained on (another recording seed)
    shards = json.loads((root / "shards/meta.json").read_text())
    assert shards["stats_from"] == str(root / "runs/base/policy")
    assert shards["stats"]["action"] == base_meta["stats"]["action"]
    recorded = [
        json.loads((root / d / "meta" / "sigma_sim.json").read_text())["seed"]
        for d in ("data-base", "data", "data-transfer")
    ]
    assert recorded == [0, 2, 1]


def test_every_run_on_the_base_loads_all_of_its_tensors(smoke):
    """The frozen tau = 0 path of Sigma and the controls is the base's, tensor for tensor."""
    from safetensors.torch import load_file

    base = load_file(smoke / "runs/base/policy/model.safetensors")
    # the LoRA-only control has no memory (memory: none): the pathway's, not the base's
    runs = (
        ("sigma", ()),
        ("lora-only", ("memory.",)),
        ("transfer/base-longer", ()),
        ("transfer/sigma-declutter", ()),
        ("transfer/declutter", ()),
    )
    for run, absent in runs:
        policy = load_file(smoke / "runs" / run / "policy" / "model.safetensors")
        missing = [k for k in sorted(set(base) - set(policy)) if not k.startswith(absent)]
        assert not missing, (run, missing[:5])
        assert all(policy[k].shape == base[k].shape for k in set(base) & set(policy)), run
    sigma = load_file(smoke / "runs/sigma/policy/model.safetensors")
    frozen = [  # the vision's tau modulator (FiLM) is the pathway's: trained in stage sigma
        k
        for k in base
        if k.startswith(("vision.", "auxiliary_state.", "query.", "vector.", "chunk."))
        and not k.startswith("vision.modulator.")
    ]
    assert frozen and all(torch.equal(sigma[k], base[k]) for k in frozen)


def test_a_rerun_skips_every_finished_stage(smoke):
    again = quickstart(smoke, "--transfer")
    recorded = ("base demonstrations", "demonstrations", "transfer demonstrations")
    assert all(again["seconds"][k] == 0.0 for k in again["seconds"] if k not in recorded)
    assert all(again["seconds"][k] < 5 for k in recorded)


def test_the_shipped_base_is_the_recorded_file_and_every_run_builds_on_it(tmp_path):
    """The package's pretrained base: its sha256, its spec, and the runs laid over it."""
    from safetensors.torch import load_file

    from sigma_cli.quickstart import FULL, install_base, shipped_base, specs
    from sigma_core import build_policy, sha256_file
    from sigma_core.model.checkpoint import init_from_checkpoint

    source = shipped_base()
    provenance = json.loads((source / "provenance.json").read_text())
    assert sha256_file(source / "model.safetensors") == provenance["model.safetensors"]["sha256"]
    timings: dict[str, float] = {}
    install_base(tmp_path, timings)
    base_dir = tmp_path / "runs" / "base" / "policy"
    assert sha256_file(base_dir / "model.safetensors") == provenance["model.safetensors"]["sha256"]
    base = json.loads((base_dir / "sigma.json").read_text())
    assert base["spec"]["model"]["scene_state"] == "estimated" and base["stats"]
    # what --train-base trains is what the shipped base was trained with
    from sigma_cli.quickstart import base_spec
    from sigma_core import get_registry, validate_spec

    wanted = validate_spec(base_spec(FULL), get_registry()).model_dump(mode="json")
    shipped = validate_spec(base["spec"], get_registry()).model_dump(mode="json")
    unpinned = {  # a saved spec pins each slot's distribution ("from")
        k: {f: x for f, x in v.items() if f != "from"} if isinstance(v, dict) else v
        for k, v in shipped["model"].items()
    }
    assert unpinned == wanted["model"]
    assert shipped["train"]["teacher_forcing"] == wanted["train"]["teacher_forcing"] == 1.0
    assert shipped["train"]["losses"] == wanted["train"]["losses"]
    assert base["trained_on"]["train_episodes"]  # sigma eval refuses the base's windows
    runs = specs(FULL, tmp_path, base["spec"])
    assert runs["sigma"].model.vision == runs["base"].model.vision
    assert runs["lora-only"].model.telepathy is False
    assert runs["sigma"].train.losses.state_weights == runs["base"].train.losses.state_weights
    assert runs["base-longer"].train.init_from == str(base_dir)
    policy = build_policy(runs["sigma"])
    counts = init_from_checkpoint(policy, base_dir)
    assert counts["skipped"] == 0
    assert counts["loaded"] == len(load_file(base_dir / "model.safetensors"))
    install_base(tmp_path, timings)  # a rerun keeps what is there
    assert timings["base (shipped)"] == 0.0
