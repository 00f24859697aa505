"""`sigma train` as real processes: kill -9 then --resume, and 2-process data parallel."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from cli_fixtures import tiny_shards_fixture  # noqa: F401 (the tiny_shards fixture)
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[3]
DEFAULT = REPO / "configs" / "default.yaml"
ENV = {**os.environ, "COLUMNS": "200", "OMP_NUM_THREADS": "1"}


def spec_file(
    tmp_path: Path, name: str, lora_dropout: float | None = None, **train_and_data
) -> Path:
    """configs/default.yaml with ``data`` / ``train`` entries (and LoRA dropout) overridden."""
    raw = yaml.safe_load(DEFAULT.read_text())
    if lora_dropout is not None:
        raw["model"]["backbone"]["lora"]["dropout"] = lora_dropout
    raw.setdefault("data", {}).update(train_and_data.pop("data", {}))
    raw["train"].update(train_and_data)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def train_cmd(spec: Path, shards: Path, out: Path, *extra: str) -> list[str]:
    return [
        *("-m", "sigma_cli", "train", str(spec), "--data", str(shards), "--out", str(out)),
        *("--threads", "1", "--device", "cpu", *extra),
    ]


def run(args: list[str]) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, env=ENV, timeout=300
    )
    assert res.returncode == 0, res.stderr[-3000:]
    return res


def rows(run_dir: Path) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(r).items() if "seconds" not in k} for r in lines]


def start_and_stop_at(cmd: list[str], last: Path, checkpoint: str, sig: int) -> tuple[int, str]:
    """Start ``cmd``, send ``sig`` once ``last`` names ``checkpoint``; (exit code, stderr)."""
    proc = subprocess.Popen(
        [sys.executable, *cmd],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        # a shell's background jobs inherit SIGINT ignored, and Python then never raises
        # KeyboardInterrupt: give the child the default disposition, as a terminal would
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 240
    while not (last.exists() and last.read_text().strip() == checkpoint):
        assert proc.poll() is None, "the run ended before it could be stopped"
        assert time.monotonic() < deadline
        time.sleep(0.01)
    os.kill(proc.pid, sig)
    _, stderr = proc.communicate(timeout=120)
    return proc.returncode, stderr.decode()


@pytest.mark.slow  # 80 s; in-process resume is in test_cli (test_train_cli_runs_resumes_...)
def test_ctrl_c_and_kill_9_then_resume_give_bit_identical_weights(tmp_path, tiny_shards):
    # stage sigma, memory unrolled over runs of 2 windows; a random base (a smoke test)
    run2 = {"run_length": 2, "run_stride": 4}
    spec = spec_file(tmp_path, "s", steps=8, allow_random_base=True, data=run2)
    whole, stopped = tmp_path / "whole", tmp_path / "stopped"
    run(train_cmd(spec, tiny_shards, whole, "--checkpoint-every", "2"))

    cmd = train_cmd(spec, tiny_shards, stopped, "--checkpoint-every", "2")
    code, stderr = start_and_stop_at(cmd, stopped / "last", "step_000002", signal.SIGINT)
    assert code == 130 and "interrupted" in stderr and "Traceback" not in stderr
    # then a hard kill mid step 5 of the resumed run: weights, moments and RNG all moved
    code, _ = start_and_stop_at([*cmd, "--resume"], stopped / "last", "step_000004", signal.SIGKILL)
    assert code == -signal.SIGKILL
    assert not (stopped / "policy").exists()

    resumed = run([*cmd, "--resume"])
    assert json.loads(resumed.stdout)["steps"] == 8
    a = load_file(whole / "policy" / "model.safetensors")
    b = load_file(stopped / "policy" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert rows(whole) == rows(stopped)
    assert not list((stopped / "checkpoints").glob(".*"))  # no half-written checkpoint left


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow  # 50 s: two accelerate processes on the CI's two cores
def test_two_process_data_parallel_matches_one_process(tmp_path, tiny_shards):
    """torchrun x2 with batch 4 each == one process with batch 8 (same samples per step).

    Stage sigma with the memory unrolled over runs of 2 windows. λ_hard = 0 because the
    hard set is chosen per process (the top ρ of 4 samples, not of 8), β_mi = 0
    because InfoNCE's negatives are per process, and LoRA dropout 0 because its masks
    come from each process's own RNG stream; every other term is a mean over
    samples, so DDP's gradient average equals the single process's gradient up to
    float summation order.
    """
    common = {
        "stage": "sigma",
        "steps": 4,
        "allow_random_base": True,
        "losses": {"lambda_hard": 0.0, "beta_mi": 0.0},
    }
    run2 = {"run_length": 2, "run_stride": 4}
    one = spec_file(tmp_path, "one", 0.0, data={"batch_size": 8, **run2}, **common)
    two = spec_file(tmp_path, "two", 0.0, data={"batch_size": 4, **run2}, **common)
    run(train_cmd(one, tiny_shards, tmp_path / "one", "--checkpoint-every", "1"))
    launcher = ["-m", "torch.distributed.run", "--nproc_per_node", "2"]
    launcher += ["--master_port", str(free_port())]
    res = run([*launcher, *train_cmd(two, tiny_shards, tmp_path / "two")])
    assert res.stdout.count('"steps"') == 1  # one summary, from the main process
    a = load_file(tmp_path / "one" / "policy" / "model.safetensors")
    b = load_file(tmp_path / "two" / "policy" / "model.safetensors")
    step3 = load_file(tmp_path / "one" / "checkpoints" / "step_000003" / "heads.safetensors")
    moved = max((a[k] - step3[k]).abs().max().item() for k in step3)  # one step's update
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    print(f"max |Δw| one vs two processes {worst:.2e}; the last step moved {moved:.2e}")
    assert worst < moved / 10
    r1, r2 = rows(tmp_path / "one"), rows(tmp_path / "two")
    assert [r["step"] for r in r2] == [1, 2, 3, 4]
    for x, y in zip(r1, r2, strict=True):
        assert x["L_act"] == pytest.approx(y["L_act"], rel=1e-4)
