"""sigma quickstart --smoke: every stage of the embedded default, its report field by field."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

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
    summary = quickstart(smoke)
    assert set(summary["seconds"]) == {
        "demonstrations",
        "preprocess",
        "train base",
        "train sigma",
        "train lora-only",
        "eval",
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
        assert c["latency_ms"]["p99"] > 0
    for c in summary["comparisons"]:
        d = c["difference"]
        assert d["low"] <= d["estimate"] <= d["high"] and c["episodes"] >= 1
    root = smoke
    for path in (
        "runs/base/policy",
        "runs/sigma/policy",
        "runs/lora-only/policy",
        "eval/report.md",
        "eval/sigma_eval_checkA.json",
        "eval/sigma_eval_checkB.json",
        "quickstart.json",
    ):
        assert (root / path).exists(), path
    assert json.loads((root / "quickstart.json").read_text()) == summary


def test_a_rerun_skips_every_finished_stage(smoke):
    again = quickstart(smoke)
    assert all(again["seconds"][k] == 0.0 for k in again["seconds"] if k != "demonstrations")
    assert again["seconds"]["demonstrations"] < 5
