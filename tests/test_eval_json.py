"""``sigma eval --sim N --json`` out of process: stdout is one JSON document, nothing else.

A tiny random policy at 32 px on 3 recorded demonstrations (one held out), two
closed-loop episodes of a fifth of a simulated second each.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

CAMERAS = ["overhead", "wrist"]
DIMS = {"d_model": 32, "image_size": 32, "chunk_horizon": 4, "horizon": 8, "cameras": CAMERAS}


@pytest.fixture(scope="module")
def small(tmp_path_factory, three_demos):
    """(saved policy, shards with a held-out test episode) in the simulator's scene, from
    the 3 recorded demonstrations of conftest.py."""
    from sigma_core import build_policy, get_registry, validate_spec
    from sigma_core.data import PreprocessOptions, preprocess
    from sigma_lerobot.dataset import LeRobotSource

    root = tmp_path_factory.mktemp("eval-json")
    opts = PreprocessOptions(
        cameras=CAMERAS, image_size=32, horizon=8, chunk=4, val_fraction=0, test_fraction=0.34
    )
    preprocess(LeRobotSource(str(three_demos["path"]), CAMERAS), root / "shards", opts)
    spec = validate_spec({"model": {"dims": DIMS}}, get_registry())
    build_policy(spec).save_pretrained(root / "tiny")
    return root


def test_eval_sim_json_prints_only_json_on_stdout(small):
    """The issue's check, as a shell runs it: ``sigma eval ... --json | python -m json.tool``."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    eval_cmd = [
        sys.executable,
        "-m",
        "sigma_cli",
        "eval",
        str(small / "tiny"),
        "--data",
        str(small / "shards"),
        "--out",
        str(small / "report"),
        "--sim",
        "2",
        "--max-seconds",
        "0.2",
        "--device",
        "cpu",
        "--no-plots",
        "--json",
    ]
    piped = subprocess.run(
        ["bash", "-o", "pipefail", "-c", " ".join(f"'{a}'" for a in eval_cmd)
         + f" | '{sys.executable}' -m json.tool"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )  # fmt: skip
    assert piped.returncode == 0, piped.stderr[-3000:]
    report = json.loads(piped.stdout)
    assert report == json.loads((small / "report" / "report.json").read_text())
    assert report["closed_loop"]["tiny"]["episodes"] == 2
    assert report["groups"]["tiny"]["windows"] > 0
    # the progress lines went to stderr: run again (the journal answers the closed loop)
    again = subprocess.run(eval_cmd, capture_output=True, text=True, env=env, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads(again.stdout)["closed_loop"] == report["closed_loop"]
    assert "evaluating 1 policy on cpu" in again.stderr
    assert "closed loop: tiny, 2 episodes" in again.stderr
    assert "2 of 2 episodes read back" in again.stderr  # sigma_sim's own message
    # the instruction-once variant is another setting: run, not read back, and reported
    once, bad = (
        subprocess.run(
            [*eval_cmd, "--instruction-steps", k], capture_output=True, text=True, env=env
        )
        for k in ("1", "-1")
    )
    assert once.returncode == 0, once.stderr[-3000:]
    assert json.loads(once.stdout)["closed_loop"]["tiny"]["instruction_steps"] == 1
    assert "read back" not in once.stderr
    assert bad.returncode == 2 and "instruction-steps" in bad.stderr
