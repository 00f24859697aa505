"""Sigma inside LeRobot's own tools: lerobot-train out of process, then a control loop."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from sigma_lerobot.testing import write_random_walk_dataset

REPO = Path(__file__).resolve().parents[3]
TASK = "pick up the red cube"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


@pytest.fixture(scope="module", autouse=True)
def discovered() -> None:
    """What LeRobot's tools do at start: import every installed lerobot_policy_* package."""
    from lerobot.utils.import_utils import register_third_party_plugins

    register_third_party_plugins()


def tiny_spec() -> dict:
    """configs/base-tiny.yaml without its privileged auxiliary target: these LeRobot
    datasets (like real robot data) have no observation.environment_state."""
    spec = yaml.safe_load((REPO / "configs" / "base-tiny.yaml").read_text())
    spec["model"]["dims"].pop("auxiliary_state_dim")
    return spec


def write_dataset(root: Path, lengths: list[int]) -> None:
    write_random_walk_dataset(root, lengths, repo_id="sim/so101")


def lerobot_train_args(dataset: Path, out: Path, *extra: str) -> list[str]:
    args = [sys.executable, "-m", "lerobot.scripts.lerobot_train", "--policy.type=sigma"]
    args += ["--dataset.repo_id=sim/so101", f"--dataset.root={dataset}", f"--output_dir={out}"]
    args += ["--steps=2", "--batch_size=2", "--save_freq=2", "--log_freq=1", "--num_workers=0"]
    args += ["--policy.push_to_hub=false", "--wandb.enable=false", "--policy.device=cpu", *extra]
    return args


def lerobot_train(dataset: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    args = lerobot_train_args(dataset, out, *extra)
    return subprocess.run(args, capture_output=True, text=True, env=ENV, timeout=600)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("lerobot")
    write_dataset(root / "ds", [24, 24, 24])
    spec = tiny_spec()
    spec.pop("data", None)
    (root / "spec.yaml").write_text(yaml.safe_dump(spec))
    result = lerobot_train(root / "ds", root / "out", f"--policy.spec={root / 'spec.yaml'}")
    assert result.returncode == 0, result.stderr[-3000:]
    return root, root / "out" / "checkpoints" / "000002" / "pretrained_model"


def test_lerobot_train_trains_sigma_and_its_checkpoint_drives_a_control_loop(trained):
    from lerobot.policies.factory import get_policy_class, make_pre_post_processors

    _, checkpoint = trained
    config = json.loads((checkpoint / "config.json").read_text())
    assert config["type"] == "sigma" and config["spec_dict"]["train"]["stage"] == "base"
    assert config["spec_dict"]["model"]["dims"]["cameras"] == ["up", "side"]
    assert (checkpoint / "policy_preprocessor.json").is_file()

    policy = get_policy_class("sigma").from_pretrained(str(checkpoint)).eval()
    pre, post = make_pre_post_processors(policy.config, pretrained_path=str(checkpoint))
    g = torch.Generator().manual_seed(0)
    obs = {
        "observation.state": torch.randn(6, generator=g),
        "observation.images.up": torch.rand(3, 32, 32, generator=g),
        "observation.images.side": torch.rand(3, 32, 32, generator=g),
        "task": TASK,
    }
    torch.manual_seed(0)
    plan = post(policy.predict_action_chunk(pre(obs)))  # (1, H_c, 6), dataset units
    policy.reset()
    n = policy.model.spec.run_stride()  # replanning stride, what reset() defaults to
    torch.manual_seed(0)
    # what lerobot-record's loop calls: pre -> select_action -> post, every control step
    actions = [post(policy.select_action(pre(obs))) for _ in range(n + 1)]
    assert all(a.shape == (1, 6) and torch.isfinite(a).all() for a in actions)
    # the first n steps execute the plan; step n + 1 replans (with the memory carried)
    torch.testing.assert_close(torch.stack(actions[:n], dim=1), plan[:, :n])
    assert len(policy.model._queue) == n - 1


def test_save_and_load_through_lerobot_round_trip_to_the_same_actions(trained, tmp_path):
    from lerobot.policies.factory import get_policy_class

    _, checkpoint = trained
    cls = get_policy_class("sigma")
    policy = cls.from_pretrained(str(checkpoint)).eval()
    policy.save_pretrained(tmp_path / "again")
    again = cls.from_pretrained(str(tmp_path / "again")).eval()
    batch = {
        "observation.state": torch.randn(2, 6),
        "observation.images.up": torch.rand(2, 3, 32, 32),
        "observation.images.side": torch.rand(2, 3, 32, 32),
        "task": [TASK, TASK],
    }
    torch.manual_seed(0)
    want = policy.predict_action_chunk(batch)
    torch.manual_seed(0)
    got = again.predict_action_chunk(batch)
    assert want.shape == (2, policy.model.dims.chunk_horizon, 6) and torch.equal(want, got)


def test_a_spec_naming_a_missing_component_fails_with_sigmas_message(trained):
    root, _ = trained
    spec = tiny_spec()
    spec["model"]["vector"] = {"type": "nope"}
    (root / "bad.yaml").write_text(yaml.safe_dump(spec))
    result = lerobot_train(root / "ds", root / "bad-out", f"--policy.spec={root / 'bad.yaml'}")
    assert result.returncode != 0
    assert "nope" in result.stderr and "token" in result.stderr  # the registered names


def test_lerobots_peft_flags_fine_tune_a_sigma_checkpoint(trained):
    """--policy.path + --peft.*: LeRobot wraps Sigma with LoRA on the layers named."""
    root, checkpoint = trained
    args = [a for a in lerobot_train_args(root / "ds", root / "peft") if a != "--policy.type=sigma"]
    args += [f"--policy.path={checkpoint}", "--peft.method_type=LORA", "--peft.r=4"]
    args += [r"--peft.target_modules=model\.residual\..*\.(0|3)"]
    result = subprocess.run(args, capture_output=True, text=True, env=ENV, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    out = root / "peft" / "checkpoints" / "000002" / "pretrained_model"
    assert (out / "adapter_model.safetensors").is_file()
    assert json.loads((out / "adapter_config.json").read_text())["r"] == 4


def test_a_sigma_export_loads_in_lerobot_to_the_same_actions(tmp_path):
    """`sigma export` output: SigmaPolicy.from_pretrained and LeRobot both load it."""
    from lerobot.policies.factory import get_policy_class
    from typer.testing import CliRunner

    from sigma_cli.main import app
    from sigma_core import SigmaPolicy as Model
    from sigma_core import get_registry, validate_spec
    from sigma_core.testing import example_batch, planned_actions

    raw = tiny_spec()
    Model(validate_spec(raw, get_registry())).save_pretrained(tmp_path / "policy")
    result = CliRunner().invoke(app, ["export", str(tmp_path / "policy"), str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    sigma = Model.from_pretrained(tmp_path / "out").eval()
    lerobot = get_policy_class("sigma").from_pretrained(str(tmp_path / "out")).eval()
    batch = example_batch(sigma.dims, batch_size=2)
    assert torch.equal(planned_actions(sigma, batch), planned_actions(lerobot.model, batch))


def cli(*args: object):
    from typer.testing import CliRunner

    from sigma_cli.main import app

    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def stage_sigma_run(tmp_path_factory):
    """`sigma train` stage base, then stage sigma on it by a path relative to the run's
    directory (as the quickstart does): the export must not depend on either."""
    from sigma_core.testing import write_synthetic_shards

    root = tmp_path_factory.mktemp("portable")
    shards = write_synthetic_shards(root / "shards", val_fraction=0, test_fraction=0)
    raw = yaml.safe_load((REPO / "configs" / "default.yaml").read_text())
    base = {**raw, "train": {**raw["train"], "stage": "base"}}
    sigma = {**raw, "base_policy": {"type": "checkpoint", "path": "runs/base/policy"}}
    (root / "base.yaml").write_text(yaml.safe_dump(base))
    (root / "sigma.yaml").write_text(yaml.safe_dump(sigma))
    here = Path.cwd()
    os.chdir(root)
    try:
        for stage in ("base", "sigma"):
            result = cli("train", f"{stage}.yaml", "--data", shards, "--out", f"runs/{stage}")
            assert result.exit_code == 0, result.output
    finally:
        os.chdir(here)
    return root


def test_an_export_of_a_stage_sigma_run_loads_anywhere_after_the_run_is_deleted(
    stage_sigma_run, tmp_path, monkeypatch
):
    """sigma export bundles the frozen base: move the folder, delete the run, load it in
    Sigma and in LeRobot from another directory: bit-equal plans."""
    import shutil

    from lerobot.policies.factory import get_policy_class

    from sigma_core import SigmaPolicy as Model
    from sigma_core.testing import example_batch, planned_actions

    root = stage_sigma_run
    monkeypatch.chdir(root)
    trained = Model.from_pretrained("runs/sigma/policy").eval()
    batch = example_batch(trained.dims, batch_size=2)
    want = planned_actions(trained, batch)
    assert not torch.equal(want, planned_actions(trained.base_policy.base, batch))

    result = cli("export", "runs/sigma", root / "export")
    assert result.exit_code == 0, result.output
    assert {"base/model.safetensors", "base/sigma.json"} <= set(json.loads(result.output)["files"])
    meta = json.loads((root / "export" / "sigma.json").read_text())
    assert meta["bundled"] == {"base_policy.path": "base"}
    assert meta["spec"]["base_policy"]["path"] == "base"
    assert json.loads((root / "export" / "config.json").read_text())["bundled"] == meta["bundled"]

    moved = tmp_path / "elsewhere" / "my-policy"
    shutil.move(root / "export", moved)
    shutil.copytree(root / "runs", tmp_path / "runs-kept")  # restored for other tests
    shutil.rmtree(root / "runs")
    monkeypatch.chdir(tmp_path)
    try:
        sigma = Model.from_pretrained(moved).eval()
        lerobot = get_policy_class("sigma").from_pretrained(str(moved)).eval()
        assert torch.equal(planned_actions(sigma, batch), want)
        assert torch.equal(planned_actions(lerobot.model, batch), want)
        # LeRobot's save keeps the bundle: the copy loads on its own too
        lerobot.save_pretrained(tmp_path / "again")
        again = get_policy_class("sigma").from_pretrained(str(tmp_path / "again")).eval()
        assert torch.equal(planned_actions(again.model, batch), want)
        assert (
            json.loads((tmp_path / "again" / "config.json").read_text())["spec_dict"][
                "base_policy"
            ]["path"]
            == "base"
        )
    finally:
        shutil.copytree(tmp_path / "runs-kept", root / "runs")


def logged(stderr: str, column: str) -> dict[int, float]:
    """``step -> value`` of one column in lerobot-train's log lines."""
    import re

    out = {}
    for line in stderr.splitlines():
        step, value = re.search(r"step:(\d+)", line), re.search(rf"{column}:(-?[\d.]+)", line)
        if step and value:
            out[int(step.group(1))] = float(value.group(1))
    return out


def tsac_step(checkpoint: Path) -> int:
    from safetensors import safe_open

    with safe_open(str(checkpoint / "model.safetensors"), "pt") as f:
        return int(f.get_tensor("tsac_step"))


def test_lerobot_train_resume_continues_the_tsac_ramps(tmp_path):
    """Stage sigma through lerobot-train: 2 steps, then --resume to 4; the ramps' step
    is saved with the checkpoint, so w_sem continues where it stopped."""
    write_dataset(tmp_path / "ds", [24, 24])
    spec = tiny_spec()
    spec.pop("data", None)
    spec["train"] = {**spec["train"], "stage": "sigma", "allow_random_base": True, "steps": 40}
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    out = tmp_path / "out"
    first = lerobot_train(tmp_path / "ds", out, f"--policy.spec={tmp_path / 'spec.yaml'}")
    assert first.returncode == 0, first.stderr[-3000:]
    assert tsac_step(out / "checkpoints" / "000002" / "pretrained_model") == 2
    config = out / "checkpoints" / "last" / "pretrained_model" / "train_config.json"
    args = [sys.executable, "-m", "lerobot.scripts.lerobot_train", f"--config_path={config}"]
    args += ["--resume=true", "--steps=4"]
    resumed = subprocess.run(args, capture_output=True, text=True, env=ENV, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert tsac_step(out / "checkpoints" / "000004" / "pretrained_model") == 4
    before, after = logged(first.stderr, "w_sem"), logged(resumed.stderr, "w_sem")
    # Table 1's ramp 0.1 -> 1.0 over the first 27.5% of train.steps (40): rising every step
    assert sorted(before) == [1, 2] and sorted(after) == [3, 4]
    assert before[1] < before[2] < after[3] < after[4]


def test_padded_action_steps_are_left_out_of_traf(trained):
    """LeRobot marks steps past an episode's end in action_is_pad: they do not count."""
    from lerobot.policies.factory import get_policy_class

    _, checkpoint = trained
    policy = get_policy_class("sigma").from_pretrained(str(checkpoint)).eval()
    t, g = policy.model.dims.horizon, torch.Generator().manual_seed(0)
    batch = {
        "observation.state": torch.randn(2, 6, generator=g),
        "observation.images.up": torch.rand(2, 3, 32, 32, generator=g),
        "observation.images.side": torch.rand(2, 3, 32, 32, generator=g),
        "task": [TASK, TASK],
        "action": torch.randn(2, t, 6, generator=g),
        "action_is_pad": torch.zeros(2, t, dtype=torch.bool),
    }
    batch["action_is_pad"][0, 5:] = True  # sample 0's episode ends after 5 steps

    def loss(b: dict) -> float:
        torch.manual_seed(0)
        with torch.no_grad():
            return policy.forward(b)[0].item()

    reference = loss(batch)
    moved = {**batch, "action": batch["action"].clone()}
    moved["action"][0, 5:] += 100.0  # whatever LeRobot put in the padding
    assert loss(moved) == reference
    moved["action"][0, 4] += 1.0  # a real step does count
    assert loss(moved) != reference
    unmasked = {k: v for k, v in batch.items() if k != "action_is_pad"}
    assert loss({**unmasked, "action": moved["action"]}) > reference + 1.0
    assert int(policy.tsac_step) == 2  # the checkpoint's 2 steps; evaluation does not advance


def test_select_action_leaves_every_modules_mode_as_it_was(trained):
    from lerobot.policies.factory import get_policy_class

    _, checkpoint = trained
    policy = get_policy_class("sigma").from_pretrained(str(checkpoint))
    obs = {
        "observation.state": torch.randn(1, 6),
        "observation.images.up": torch.rand(1, 3, 32, 32),
        "observation.images.side": torch.rand(1, 3, 32, 32),
        "task": TASK,
    }
    plans = {}
    for mode in (True, False):
        policy.train(mode)
        modes = [m.training for m in policy.modules()]
        policy.reset()
        torch.manual_seed(0)
        plans[mode] = torch.stack([policy.select_action(obs) for _ in range(3)])
        chunk = policy.predict_action_chunk(obs)
        assert [m.training for m in policy.modules()] == modes
        assert policy.training is mode and chunk.shape[-1] == 6
    assert torch.equal(plans[True], plans[False])  # no dropout while acting, in either mode
