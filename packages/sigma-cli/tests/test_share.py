"""`sigma export` / `sigma push`: a run as a hub-ready folder both loaders read (offline)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from sigma_cli.main import app
from sigma_core import SigmaPolicy, SigmaUserError
from sigma_core.testing import example_batch, planned_actions, write_synthetic_shards

REPO = Path(__file__).resolve().parents[3]


def invoke(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def run_and_report(tmp_path_factory):
    root = tmp_path_factory.mktemp("share")
    shards = write_synthetic_shards(root / "shards", val_fraction=0.25, test_fraction=0)
    raw = yaml.safe_load((REPO / "configs" / "default.yaml").read_text())
    raw["train"]["allow_random_base"] = True  # stage sigma on a random base: a smoke run
    spec = root / "spec.yaml"
    spec.write_text(yaml.safe_dump(raw))
    trained = invoke("train", spec, "--data", shards, "--out", root / "run", "--steps", "2")
    assert trained.exit_code == 0, trained.output
    evaluated = invoke(
        "eval", root / "run", "--data", shards, "--out", root / "eval", "--split", "val"
    )
    assert evaluated.exit_code == 0, evaluated.output
    return root


def same_actions(a: Path, b: Path) -> None:
    pa, pb = SigmaPolicy.from_pretrained(a).eval(), SigmaPolicy.from_pretrained(b).eval()
    batch = example_batch(pa.dims, batch_size=2)
    assert torch.equal(planned_actions(pa, batch), planned_actions(pb, batch))


def test_export_writes_a_loadable_folder_with_a_model_card(run_and_report):
    root = run_and_report
    out = root / "export"
    result = invoke(
        "export", root / "run", out, "--report", root / "eval", "--base-model", "org/base"
    )
    assert result.exit_code == 0, result.output
    files = json.loads(result.output)["files"]
    for name in ("model.safetensors", "sigma.json", "spec.yaml", "README.md", "eval/report.json"):
        assert name in files
    assert {"adapter_model.safetensors", "adapter_config.json"} <= set(files)  # PEFT LoRA
    card = (out / "README.md").read_text()
    front = yaml.safe_load(card.split("---")[1])
    assert front["library_name"] == "sigma-vla" and front["base_model"] == "org/base"
    assert "robotics" in front["tags"] and "2512.00783" in card and "2504.16054" in card
    report = json.loads((root / "eval" / "report.json").read_text())
    for group in report["groups"]:
        assert f"| {group} |" in card
    meta = json.loads((out / "sigma.json").read_text())
    assert yaml.safe_load((out / "spec.yaml").read_text()) == meta["spec"]
    same_actions(root / "run" / "policy", out)


def test_export_refuses_what_is_not_a_run(tmp_path, run_and_report):
    result = invoke("export", tmp_path, tmp_path / "out")
    assert result.exit_code == 2 and "neither a training run" in result.output
    missing = invoke("export", run_and_report / "run", tmp_path / "o", "--report", tmp_path)
    assert missing.exit_code == 2 and "no report.json" in missing.output
    assert not (tmp_path / "o").exists()  # nothing half-written


class FakeHub:
    """Stands in for huggingface_hub.HfApi: uploads land in a local folder."""

    calls: list[tuple] = []
    root: Path
    fail = False

    def create_repo(self, repo_id, repo_type, private, exist_ok):
        FakeHub.calls.append(("create_repo", repo_id, private))

    def upload_folder(self, folder_path, repo_id, repo_type, commit_message):
        if FakeHub.fail:
            raise RuntimeError("401 Client Error: Unauthorized")
        shutil.copytree(folder_path, FakeHub.root / repo_id)
        FakeHub.calls.append(("upload_folder", repo_id, commit_message))
        return "abc123"


def test_push_uploads_the_export_and_never_prints_the_token(run_and_report, tmp_path, monkeypatch):
    import huggingface_hub

    FakeHub.root, FakeHub.calls, FakeHub.fail = tmp_path, [], False
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHub)
    monkeypatch.setenv("HF_TOKEN", "hf_do_not_print_me")
    result = invoke("push", run_and_report / "run", "me/sigma", "--private")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"repo_id": "me/sigma", "commit": "abc123"}
    assert FakeHub.calls[0] == ("create_repo", "me/sigma", True)
    same_actions(run_and_report / "run" / "policy", tmp_path / "me" / "sigma")
    FakeHub.fail = True
    failed = invoke("push", run_and_report / "run", "me/other")
    assert failed.exit_code == 2 and "Unauthorized" in failed.output
    assert "hf_do_not_print_me" not in result.output + failed.output


def test_model_card_shows_closed_loop_success_with_its_interval():
    from sigma_cli.share import evaluation_table

    report = {
        "split": "test",
        "data": {"episodes": 2, "windows": 10},
        "groups": {"sigma": {"metrics": {"mse_vec": 0.1, "mse_chk": 0.2, "mse_trj": 0.3}}},
        "closed_loop": {
            "sigma": {
                "episodes": 10,
                "successes": 3,
                "success_rate": {"estimate": 0.3, "low": 0.108, "high": 0.603, "level": 0.95},
                "latency_ms": {"p50": 1.0, "p99": 2.0},
                "episodes_detail": [{"seed": i} for i in range(10)],
            }
        },
    }
    card = "\n".join(evaluation_table(report))
    assert "| sigma | 10 | 3: 30% [11%, 60%] |" in card
    assert "episodes_detail" not in card and "latency" not in card  # not the whole summary


@pytest.fixture(scope="module")
def on_a_base(tmp_path_factory):
    """A saved stage-sigma policy on a frozen checkpoint base named by a relative path."""
    from sigma_core import build_policy, get_registry, validate_spec

    root = tmp_path_factory.mktemp("on-a-base")
    raw = yaml.safe_load((REPO / "configs" / "default.yaml").read_text())
    base = {**raw, "train": {**raw["train"], "stage": "base", "seed": 1}}
    build_policy(validate_spec(base, get_registry())).save_pretrained(root / "runs/base/policy")
    here = Path.cwd()
    os.chdir(root)
    try:
        sigma = {**raw, "base_policy": {"type": "checkpoint", "path": "runs/base/policy"}}
        build_policy(validate_spec(sigma, get_registry())).save_pretrained(root / "sigma")
    finally:
        os.chdir(here)
    return root


def plans_from(directory: Path) -> torch.Tensor:
    policy = SigmaPolicy.from_pretrained(directory).eval()
    return planned_actions(policy, example_batch(policy.dims, batch_size=2))


def test_export_names_the_base_by_path_or_hub_id_instead_of_bundling_it(
    on_a_base, tmp_path, monkeypatch
):
    import huggingface_hub

    monkeypatch.chdir(on_a_base)
    want = plans_from(on_a_base / "sigma")
    kept = tmp_path / "kept-base"
    shutil.copytree(on_a_base / "runs/base/policy", kept)
    named = invoke("export", "sigma", tmp_path / "by-path", "--base-model", kept)
    assert named.exit_code == 0, named.output
    assert not (tmp_path / "by-path" / "base").exists()
    meta = json.loads((tmp_path / "by-path" / "sigma.json").read_text())
    assert meta["spec"]["base_policy"]["path"] == str(kept) and "bundled" not in meta

    fetched = []

    def snapshot_download(repo_id, **kwargs):
        fetched.append(repo_id)
        return str(kept)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    hub = invoke("export", "sigma", tmp_path / "by-id", "--base-model", "me/sigma-base")
    assert hub.exit_code == 0, hub.output
    front = yaml.safe_load((tmp_path / "by-id" / "README.md").read_text().split("---")[1])
    assert front["base_model"] == "me/sigma-base"
    monkeypatch.chdir(tmp_path)
    assert torch.equal(plans_from(tmp_path / "by-path"), want)
    assert torch.equal(plans_from(tmp_path / "by-id"), want) and fetched == ["me/sigma-base"]

    # a hub base with other weights is refused by the sha256 recorded at training
    other = tmp_path / "other-base"
    shutil.copytree(on_a_base / "sigma", other)  # another policy's weights
    for name in ("sigma.json",):
        shutil.copy2(kept / name, other / name)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda repo_id, **k: str(other))
    with pytest.raises(SigmaUserError, match="sha256"):
        SigmaPolicy.from_pretrained(tmp_path / "by-id")


def test_export_refuses_a_base_it_cannot_find_or_that_changed(on_a_base, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # not where the run was trained: the relative path is gone
    lost = invoke("export", on_a_base / "sigma", tmp_path / "out")
    assert lost.exit_code == 2 and "--base-model" in lost.output
    assert "runs/base/policy" in lost.output and not (tmp_path / "out").exists()
    monkeypatch.chdir(on_a_base)
    shutil.copytree(on_a_base / "runs", tmp_path / "runs")
    weights = on_a_base / "runs/base/policy/model.safetensors"
    shutil.copy2(on_a_base / "sigma" / "model.safetensors", weights)  # the base changed
    try:
        changed = invoke("export", "sigma", tmp_path / "out")
        assert changed.exit_code == 2 and "not the ones" in changed.output
    finally:
        shutil.copy2(tmp_path / "runs/base/policy/model.safetensors", weights)
