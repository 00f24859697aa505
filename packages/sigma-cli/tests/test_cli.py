"""The sigma CLI: light start-up, plugins listing, build, and every bad input -> exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_fixtures import tiny_shards_fixture  # noqa: F401 (the tiny_shards fixture)

REPO = Path(__file__).resolve().parents[3]
DEFAULT = REPO / "configs" / "default.yaml"


def sigma(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sigma_cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
        timeout=300,
    )


def test_help_and_plugins_do_not_import_torch():
    code = (
        "import sys; from typer.testing import CliRunner; from sigma_cli.main import app;"
        "r = CliRunner();"
        "assert r.invoke(app, ['--help']).exit_code == 0;"
        "assert r.invoke(app, ['plugins']).exit_code == 0;"
        "assert r.invoke(app, ['--version']).exit_code == 0;"
        "assert r.invoke(app, ['build', sys.argv[1], '--dry-run']).exit_code == 0;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in {'torch', 'transformers'}))"
    )
    res = subprocess.run([sys.executable, "-c", code, str(DEFAULT)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"


def test_help_is_fast():
    start = time.perf_counter()
    res = sigma("--help")
    elapsed = time.perf_counter() - start
    assert res.returncode == 0 and "plugins" in res.stdout and "build" in res.stdout
    assert elapsed < 3.0  # 1.5 s is the target on an idle machine; slack for loaded CI


def test_version_lists_every_component_distribution():
    res = sigma("--version")
    assert res.returncode == 0
    from sigma_core import __version__

    assert res.stdout.splitlines()[0] == f"sigma-vla {__version__}"
    for dist in ("sigma-vla-core", "sigma-vla-cli", "sigma-vla-vision", "sigma-vla-intent"):
        assert f"{dist} {__version__}" in res.stdout


def test_plugins_json_lists_every_kind_with_distribution():
    res = sigma("plugins", "--json")
    data = json.loads(res.stdout)
    kinds = {c["kind"] for c in data["components"]}
    assert {"vision", "backbone", "memory", "intent", "action.chunk", "base_policy"} <= kinds
    assert all(c["distribution"].startswith("sigma-vla-") for c in data["components"])
    assert all(p["status"] == "ok" for p in data["plugins"])


def test_build_prints_tree_with_counts():
    res = sigma("build", str(DEFAULT), "--json")
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    slots = {c["slot"]: c for c in data["components"]}
    assert slots["model.backbone"]["frozen"] > 0 and slots["model.residual"]["frozen"] == 0
    total = sum(c["trainable"] for c in data["components"])
    assert total == data["trainable"]
    for c in data["components"]:  # sub-module rows (with "(own)") add up to the component
        if c["children"]:
            assert sum(k["trainable"] for k in c["children"]) == c["trainable"], c["slot"]
            assert sum(k["frozen"] for k in c["children"]) == c["frozen"], c["slot"]
    assert any(k["name"] == "(own)" for k in slots["model.vision"]["children"])


def test_plugins_table_folds_long_distribution_names():
    res = sigma("plugins", env={"COLUMNS": "60"})
    assert res.returncode == 0, res.stderr
    rows: list[list[str]] = []
    for line in res.stdout.splitlines():
        cells = [c.strip() for c in line.split("│")[1:-1]]
        if len(cells) != 5:
            continue
        if cells[3]:  # a new row; an empty version cell continues the previous one
            rows.append(cells)
        else:
            rows[-1] = [a + b for a, b in zip(rows[-1], cells, strict=True)]
    dists = {r[2] for r in rows}
    assert {"sigma-vla-vision", "sigma-vla-intent", "sigma-vla-action", "sigma-vla-core"} <= dists
    assert "…" not in res.stdout  # folded onto two lines, never cut


def test_dry_run_json_resolves_defaults():
    res = sigma("build", str(DEFAULT), "--dry-run", "--json")
    assert res.returncode == 0
    spec = json.loads(res.stdout)["spec"]
    assert spec["model"]["memory"] == {"type": "gated"}
    assert spec["model"]["chunk"]["pooling"] == "mean"


BAD = {
    "yaml-syntax": ("model:\n  vision: {type: perceiver\n", ":3", "YAML syntax error"),
    "unknown-key": ("model:\n  visoin: {type: perceiver}\n", ":2 model.visoin: unknown key", ""),
    "wrong-type": ("train:\n  steps: lots\n", ":2 train.steps:", "'lots'"),
    "unknown-component": (
        "model:\n  chunk: {type: chunk-pool}\n",
        ":2 model.chunk.type",
        "Did you mean 'chunk-pooling'",
    ),
    "bad-config": (
        "model:\n  memory: {type: ema, decay: 2}\n",
        ":2 model.memory.decay",
        "less than or equal to 1",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_spec_exits_2_with_location_and_no_traceback(tmp_path, case):
    text, where, what = BAD[case]
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    res = sigma("build", str(path), "--dry-run")
    assert res.returncode == 2
    assert f"{path}{where}" in res.stderr and what in res.stderr
    assert "Traceback" not in res.stderr
    assert len(res.stderr.splitlines()) < 25


def test_missing_spec_file(tmp_path):
    res = sigma("build", str(tmp_path / "missing.yaml"))
    assert res.returncode == 2 and "spec file not found" in res.stderr
    assert "Traceback" not in res.stderr


def test_debug_shows_traceback(tmp_path):
    res = sigma("--debug", "build", str(tmp_path / "missing.yaml"))
    assert res.returncode == 2 and "Traceback" in res.stderr


def test_broken_plugin_is_reported_not_fatal(tmp_path):
    (tmp_path / "broken_sigma_plugin.py").write_text(
        "raise ImportError('no such dependency: foo')\n"
    )
    dist = tmp_path / "broken_sigma_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: broken-sigma-plugin\nVersion: 0.1\n"
    )
    (dist / "entry_points.txt").write_text("[sigma]\nbroken = broken_sigma_plugin\n")
    env = {"PYTHONPATH": str(tmp_path)}
    res = sigma("plugins", "--json", env=env)
    assert res.returncode == 0
    broken = next(p for p in json.loads(res.stdout)["plugins"] if p["name"] == "broken")
    assert broken["status"] == "failed" and "no such dependency: foo" in broken["error"]
    assert broken["distribution"] == "broken-sigma-plugin"
    res = sigma("build", str(DEFAULT), "--dry-run", env=env)
    assert res.returncode == 0  # the rest still works
    strict = sigma("plugins", env={**env, "SIGMA_STRICT_PLUGINS": "1"})
    assert strict.returncode == 2 and "broken" in strict.stderr and "Traceback" not in strict.stderr


def test_train_cli_runs_resumes_and_rejects_a_second_run(tmp_path, tiny_shards):
    """sigma train on tiny shards: JSON summary, --resume continues, no clobbering."""
    from typer.testing import CliRunner

    from sigma_cli.main import app

    runner = CliRunner()
    # configs/default.yaml is stage sigma on its own tau = 0 path: refused (random base) ...
    args = ["train", str(DEFAULT), "--data", str(tiny_shards), "--out", str(tmp_path / "r")]
    refused = runner.invoke(app, args)
    assert refused.exit_code == 2 and "train.allow_random_base: true" in refused.stderr
    assert "Traceback" not in refused.output and not (tmp_path / "r").exists()
    # ... unless the spec allows it (a smoke test)
    smoke = tmp_path / "smoke.yaml"
    smoke.write_text(
        DEFAULT.read_text().replace("  stage: sigma", "  stage: sigma\n  allow_random_base: true")
    )
    args[1] = str(smoke)
    first = runner.invoke(app, [*args, "--steps", "2", "--checkpoint-every", "1"])
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["steps"] == 2
    again = runner.invoke(app, [*args, "--steps", "2"])
    assert again.exit_code == 2 and "pass --resume" in again.stderr
    more = runner.invoke(app, [*args, "--steps", "3", "--resume"])
    assert more.exit_code == 0, more.output
    assert json.loads(more.stdout)["steps"] == 3
    rows = (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["step"] for r in rows] == [1, 2, 3]
    assert (tmp_path / "r" / "policy" / "model.safetensors").is_file()
    nodata = runner.invoke(app, ["train", str(DEFAULT), "--out", str(tmp_path / "z")])
    assert nodata.exit_code == 2 and "no data" in nodata.stderr


def test_dagger_cli_names_a_bad_base_or_shard_directory(tmp_path, tiny_shards):
    """sigma dagger refuses what it cannot use with exit code 2 and the path, no
    traceback (the rounds themselves: packages/sigma-sim/tests/test_dagger.py)."""
    from typer.testing import CliRunner

    from sigma_cli.main import app

    runner = CliRunner()
    args = ["dagger", str(tmp_path / "nowhere"), "--data", str(tiny_shards)]
    nobase = runner.invoke(app, [*args, "--out", str(tmp_path / "d")])
    assert nobase.exit_code == 2 and "nowhere: not a policy directory" in nobase.stderr
    args = ["dagger", str(tmp_path), "--data", str(tmp_path / "none"), "--out", str(tmp_path)]
    noshards = runner.invoke(app, args)
    assert noshards.exit_code == 2 and "none: no such shard directory" in noshards.stderr
    assert "Traceback" not in nobase.stderr + noshards.stderr


def test_declutter_cli_names_what_it_cannot_declutter(tmp_path, tiny_shards):
    """sigma declutter: exit code 2 with the path and the reason, no traceback (the run
    itself: packages/sigma-sim/tests/test_dagger.py)."""
    from typer.testing import CliRunner

    from sigma_cli.main import app

    runner = CliRunner()
    out = ["--out", str(tmp_path / "d")]
    clean = runner.invoke(app, ["declutter", str(tmp_path), "--data", str(tiny_shards), *out])
    assert clean.exit_code == 2 and "no distractor cubes" in clean.stderr
    none = runner.invoke(app, ["declutter", str(tmp_path), "--data", str(tmp_path / "x"), *out])
    assert none.exit_code == 2 and "x: no such shard directory" in none.stderr
    assert "Traceback" not in clean.stderr + none.stderr


def test_spec_prints_schema_and_reference():
    schema = sigma("spec", "--schema")
    assert schema.returncode == 0, schema.stderr
    assert json.loads(schema.stdout)["$id"] == "urn:sigma-vla:run-spec"
    ref = sigma("spec", "--reference")
    assert ref.returncode == 0 and ref.stdout == (REPO / "docs" / "spec.md").read_text()
    neither = sigma("spec")
    assert neither.returncode == 2 and "exactly one of --schema and --reference" in neither.stderr


def test_eval_bad_input_exits_2_without_traceback(tmp_path, tiny_shards):
    empty = tmp_path / "run"
    empty.mkdir()
    (empty / "last").write_text("step_000002\n")  # a run that never finished
    res = sigma("eval", str(empty), "--data", str(tiny_shards), "--out", str(tmp_path / "r"))
    assert res.returncode == 2, res.stderr
    assert "no saved policy (sigma.json missing) (a run that has not finished" in res.stderr
    assert "Traceback" not in res.stderr and not (tmp_path / "r").exists()


def test_eval_bad_device_exits_2_before_loading_anything(tmp_path, tiny_shards):
    import torch

    from sigma_cli.evaluate import EPISODES_PER_BATCH
    from sigma_core.eval import EPISODES_PER_BATCH as CORE

    assert EPISODES_PER_BATCH == CORE  # the CLI's default, kept without importing torch
    args = ("eval", str(tmp_path / "no-run"), "--data", str(tiny_shards), "--out", str(tmp_path))
    bad = sigma(*args, "--device", "tpu")
    assert bad.returncode == 2 and "--device 'tpu': choose one of auto, cpu, cuda" in bad.stderr
    assert "Traceback" not in bad.stderr and "no-run" not in bad.stderr  # before any policy
    if not torch.cuda.is_available():
        cuda = sigma(*args, "--device", "cuda")
        assert cuda.returncode == 2 and "--device cuda: no CUDA device is visible" in cuda.stderr


def test_stdout_to_stderr_moves_python_c_and_child_process_output():
    script = (
        "import os, subprocess, sys\n"
        "from sigma_cli.ui import stdout_to_stderr\n"
        "with stdout_to_stderr():\n"
        "    print('python print')\n"
        "    os.write(1, b'fd write\\n')\n"
        "    subprocess.run(['echo', 'child process'])\n"
        "print('the result')\n"
    )
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout == "the result\n"
    assert res.stderr.split() == ["python", "print", "fd", "write", "child", "process"]


def test_eval_sim_journals_beside_the_report_and_passes_workers(monkeypatch, tmp_path):
    from types import SimpleNamespace

    import sigma_sim.rollout
    from sigma_cli.evaluate import journal_dir, simulator

    seen = {}

    def fake_rollout(policy, meta, episodes, **kwargs):
        seen.update(kwargs, episodes=episodes)
        return ["results"]

    monkeypatch.setattr(sigma_sim.rollout, "rollout", fake_rollout)
    monkeypatch.setattr(sigma_sim.rollout, "summarize", lambda results: {"n": len(results)})
    out = tmp_path / "reports" / "e1"
    assert journal_dir(out) == tmp_path / "reports" / "e1.closed-loop"  # outlives out/
    run = simulator(5, 2, None, 3.0, None, workers=3, journal_dir=journal_dir(out))
    assert run(SimpleNamespace(name="base", policy=object()), {}) == {"n": 1}
    assert seen["workers"] == 3 and seen["episodes"] == 5 and seen["seed"] == 10_002
    assert seen["journal"] == tmp_path / "reports" / "e1.closed-loop" / "base.jsonl"
    assert seen["video_dir"] is None
    simulator(1, 0, None, 1.0, journal_dir(out))(SimpleNamespace(name="base", policy=None), {})
    assert seen["video_dir"] == tmp_path / "reports" / "e1.closed-loop" / "videos" / "base"


def test_eval_sim_without_the_simulator_names_the_extra(monkeypatch):
    from sigma_cli.evaluate import simulator
    from sigma_core import SigmaUserError

    monkeypatch.setitem(sys.modules, "sigma_sim.rollout", None)  # as if not installed
    with pytest.raises(SigmaUserError, match=r"--sim needs the SO-101 simulator: pip install"):
        simulator(2, 0, 0, 5.0, None)


def _fixture_dist(root, module: str, dist: str, ep: str, body: str) -> None:
    """An installed-looking distribution on ``root`` (PYTHONPATH): module + dist-info."""
    (root / f"{module}.py").write_text(body)
    info = root / f"{module}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[sigma]\n{ep} = {module}\n")


_PLUGIN_HEAD = (
    "from sigma_core import StrictModel, hookimpl\n"
    "class Cfg(StrictModel):\n    pass\n"
    "@hookimpl\ndef sigma_register_components(register):\n"
)


def test_clash_rules_out_of_process(tmp_path):
    """A third party that sorts first and claims `memory: gated` does not change what a
    stock config builds; a pin or SIGMA_PREFER_PLUGINS selects it; strict mode exits 2;
    a name registered twice in one plugin skips only that name."""
    _fixture_dist(
        tmp_path,
        "aaa_gated",
        "aaa-gated",
        "aaa",
        _PLUGIN_HEAD
        + "    register(kind='memory', name='gated', config=Cfg, impl='aaa_gated:X')\n",
    )
    _fixture_dist(
        tmp_path,
        "twice_plugin",
        "twice-plugin",
        "twice",
        _PLUGIN_HEAD
        + "    register(kind='fusion', name='twice-a', config=Cfg, impl='twice_plugin:A')\n"
        + "    register(kind='fusion', name='twice-a', config=Cfg, impl='twice_plugin:B')\n"
        + "    register(kind='fusion', name='twice-b', config=Cfg, impl='twice_plugin:C')\n",
    )
    env = {"PYTHONPATH": str(tmp_path)}
    res = sigma("build", str(DEFAULT), "--dry-run", "--json", env=env)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["spec"]["model"]["memory"] == {
        "type": "gated",
        "from": "sigma-vla-intent",
    }
    assert "name clash: memory 'gated' is provided by sigma-vla-intent" in res.stderr
    assert "(Sigma's own, used by default) and by aaa-gated 1.0" in res.stderr
    preferred = sigma(
        "build", str(DEFAULT), "--dry-run", "--json", env={**env, "SIGMA_PREFER_PLUGINS": "aaa"}
    )
    assert json.loads(preferred.stdout)["spec"]["model"]["memory"]["from"] == "aaa-gated"
    listed = json.loads(sigma("plugins", "--json", env=env).stdout)
    twice = next(p for p in listed["plugins"] if p["name"] == "twice")
    assert twice["status"] == "ok" and twice["skipped"] == ["fusion:twice-a"]
    assert twice["components"] == ["fusion:twice-a", "fusion:twice-b"]
    (clash,) = [c for c in listed["clashes"] if (c["kind"], c["name"]) == ("memory", "gated")]
    assert clash["used"].startswith("sigma-vla-intent ") and clash["other"] == "aaa-gated 1.0"
    strict = sigma("plugins", env={**env, "SIGMA_STRICT_PLUGINS": "1"})
    assert strict.returncode == 2 and "Traceback" not in strict.stderr
    assert "name clash" in strict.stderr and "aaa-gated" in strict.stderr


def test_debug_shows_the_cause_of_a_wrapped_error(tmp_path):
    """A user error that wraps another exception keeps it as its cause: --debug shows both."""
    res = sigma("data", "sim", "--out", str(tmp_path / "d"), "--set", "cube_colors=[red")
    assert res.returncode == 2 and "the value is not YAML" in res.stderr
    assert "Traceback" not in res.stderr
    res = sigma("--debug", "data", "sim", "--out", str(tmp_path / "d"), "--set", "cube_colors=[red")
    assert res.returncode == 2 and "the value is not YAML" in res.stderr
    assert "ParserError" in res.stderr  # the YAML parser's own exception, as the cause
    assert "direct cause" in res.stderr


def test_preprocess_paper_shards_without_a_spec_takes_the_camera_count_from_the_data(tmp_path):
    """The paper's one-camera sequence layout imports without --spec, and the summary
    counts its pseudo-episodes, not its files."""
    import torch

    g = torch.Generator().manual_seed(0)
    src = tmp_path / "paper"
    src.mkdir()
    for f in range(2):  # two files, each one episode of 5 sliding windows (T = 16)
        actions = torch.cumsum(torch.randn(20, 6, generator=g), 0)
        frames = torch.randint(0, 256, (20, 3, 16, 16), generator=g, dtype=torch.uint8)
        windows = [
            {
                "vision_inputs": frames[t : t + 16].clone(),
                "robot_state": torch.randn(16, 6, generator=g),
                "gt_action_vector": actions[t].clone(),
                "gt_action_chunk": actions[t : t + 4].clone(),
                "gt_action_trajectory": actions[t : t + 16].clone(),
                "text": "pink lego brick into the transparent box",
            }
            for t in range(5)
        ]
        torch.save(windows, src / f"shard_{f:05d}.pt")
    r = sigma(
        "preprocess", "--from-sigma-shards", str(src), "--out", str(tmp_path / "out"),
        "--image-size", "16", "--min-action-norm", "0", "--json",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert meta["options"]["cameras"] == ["overhead"] and meta["options"]["chunk"] == 4
    assert meta["counts"]["episodes_in"] == meta["counts"]["episodes_kept"] == 2
