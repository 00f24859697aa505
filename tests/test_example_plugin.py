"""Out of process: install Sigma from wheels into a fresh virtual environment, as a plugin
author outside this workspace would, and use the example plugins there.

The environment holds ``sigma-vla-cli[models]`` (core, cli and the model components,
built as wheels from this checkout, pinned to the lock; no LeRobot, no MuJoCo), the
three example plugins (the GRU memory from its wheel) and plugin fixtures that raise
on import or clash. Normal and editable
installs are both checked, and the examples' own tests (the shipped contract kit, a
short training run of the DDIM head) run there.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "sigma-example-chunk"
DDIM = REPO / "examples" / "sigma-example-ddim"
GRU = REPO / "examples" / "sigma-example-gru"
BROKEN = REPO / "tests" / "fixtures" / "sigma-broken-plugin"
CLASH = REPO / "tests" / "fixtures" / "sigma-clash-plugin"
#: docs/plugins.md §0, installing from a checkout (checked to be there, then run)
DOC_EXPORT = "uv export --frozen --no-hashes --no-emit-workspace --all-packages > constraints.txt"
DOC_INSTALL = 'pip install -c constraints.txt --find-links dist "sigma-vla-cli[models]"'


def uv() -> str:
    found = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    assert found, "uv is part of the dev dependency group"
    return found


def run(
    *cmd: str | Path, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(
        [str(c) for c in cmd],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
        cwd=cwd,
    )
    assert res.returncode == 0, f"{cmd} failed:\n{res.stdout}\n{res.stderr}"
    return res


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("plugin-env") / "venv"
    run(uv(), "venv", "--quiet", "--python", sys.executable, root)
    py = root / "bin" / "python"
    # The commands docs/plugins.md §0 gives for an install from a checkout, as written
    # (uv's pip for pip): constraints from the lock (so nothing new is downloaded),
    # every wheel built into dist/, and [models] resolved from them.
    docs = (REPO / "docs" / "plugins.md").read_text()
    assert f"#   {DOC_EXPORT}" in docs and f"#   {DOC_INSTALL}" in docs
    assert "uv build\n--all-packages --wheel" in docs
    export, target = DOC_EXPORT.split(" > ")
    constraints = root.parent / target
    exported = run(uv(), *shlex.split(export)[1:], "--quiet", "--directory", REPO).stdout
    constraints.write_text(exported)
    wheels = root.parent / "dist"
    run(
        uv(),
        "build",
        "--quiet",
        "--all-packages",
        "--wheel",
        "--out-dir",
        wheels,
        "--directory",
        REPO,
    )
    install = shlex.split(DOC_INSTALL)[2:]
    install = [
        str(constraints) if a == target else str(wheels) if a == "dist" else a for a in install
    ]
    run(uv(), "pip", "install", "--quiet", "--python", py, *install, cwd=root.parent)
    run(uv(), "pip", "install", "--quiet", "--python", py, "-c", constraints, EXAMPLE, DDIM)
    run(uv(), "build", "--quiet", "--wheel", "--out-dir", root.parent / "gru", GRU)
    (gru,) = (root.parent / "gru").glob("*.whl")
    run(uv(), "pip", "install", "--quiet", "--python", py, "-c", constraints, gru)
    run(uv(), "pip", "install", "--quiet", "--python", py, "-c", constraints, BROKEN, CLASH)
    run(uv(), "pip", "install", "--quiet", "--python", py, "-c", constraints, "pytest")
    return root


def sigma_json(venv: Path, *args: str) -> dict:
    return json.loads(run(venv / "bin" / "sigma", *args).stdout)


def check_plugin_in_use(venv: Path) -> None:
    data = sigma_json(venv, "plugins", "--json")
    comp = next(c for c in data["components"] if c["name"] == "chunk-attention")
    assert comp["kind"] == "action.chunk"
    assert comp["distribution"] == "sigma-example-chunk"
    broken = next(p for p in data["plugins"] if p["name"] == "broken")
    assert broken["status"] == "failed" and "deliberately broken" in broken["error"]
    built = sigma_json(venv, "build", str(EXAMPLE / "spec.yaml"), "--json")
    chunk = next(c for c in built["components"] if c["slot"] == "model.chunk")
    assert chunk["type"] == "chunk-attention" and chunk["distribution"] == "sigma-example-chunk"
    assert chunk["trainable"] > 0


def test_normal_install(venv):
    check_plugin_in_use(venv)
    # [models] builds and trains without the data and simulation stack
    absent = run(
        venv / "bin" / "python",
        "-c",
        "import importlib.util as u; print([m for m in ('lerobot', 'mujoco', 'sigma_sim')"
        " if u.find_spec(m)])",
    )
    assert absent.stdout.strip() == "[]"
    ddim = sigma_json(venv, "build", str(DDIM / "spec.yaml"), "--json")
    traj = next(c for c in ddim["components"] if c["slot"] == "model.trajectory")
    assert traj["type"] == "ddim" and traj["distribution"] == "sigma-example-ddim"
    site = run(
        venv / "bin" / "python",
        "-c",
        "import sigma_example_chunk, os; print(os.path.dirname(sigma_example_chunk.__file__))",
    )
    assert str(EXAMPLE) not in site.stdout  # really installed, not the source tree


def test_editable_install_and_the_contract_kit(venv):
    run(uv(), "pip", "install", "--quiet", "--python", venv / "bin" / "python", "-e", EXAMPLE)
    check_plugin_in_use(venv)
    res = run(
        venv / "bin" / "python", "-m", "pytest", "-q", "-p", "no:cacheprovider", EXAMPLE / "tests"
    )
    assert "7 passed" in res.stdout  # 5 component checks + the branch's own loss (2)


def test_a_name_clash_names_both_distributions_and_from_pins_one(venv, tmp_path):
    data = sigma_json(venv, "plugins", "--json")
    (clash,) = data["clashes"]
    assert clash["used"].startswith("sigma-example-chunk") and clash["other"].startswith(
        "sigma-clash-plugin"
    )
    names = {c["name"] for c in data["components"]}
    assert "chunk-window" in names  # only the clashing name is affected
    table = run(venv / "bin" / "sigma", "plugins").stdout
    assert "Name clashes" in table and "sigma-clash-plugin" in table
    spec = tmp_path / "clash.yaml"
    spec.write_text("model:\n  chunk: {type: chunk-attention, window: 5}\n")
    bad = subprocess.run(
        [venv / "bin" / "sigma", "build", spec, "--dry-run"], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "model.chunk.window: unknown key" in bad.stderr
    assert "provided by sigma-example-chunk 0.1.0 (used by default)" in bad.stderr
    assert "`from: sigma-clash-plugin`" in bad.stderr
    spec.write_text(
        "model:\n  chunk: {type: chunk-attention, from: sigma-clash-plugin, window: 5}\n"
    )
    pinned = sigma_json(venv, "build", str(spec), "--dry-run", "--json")
    assert pinned["spec"]["model"]["chunk"] == {
        "type": "chunk-attention",
        "from": "sigma-clash-plugin",
        "window": 5,
    }


def test_a_stochastic_head_passes_the_kit_and_trains(venv):
    res = run(
        venv / "bin" / "python", "-m", "pytest", "-q", "-p", "no:cacheprovider", DDIM / "tests"
    )
    assert "8 passed" in res.stdout  # 7 kit checks + a training run


def test_a_memory_plugin_installs_from_its_wheel_passes_the_kit_and_trains(venv):
    data = sigma_json(venv, "plugins", "--json")
    gru = next(c for c in data["components"] if (c["kind"], c["name"]) == ("memory", "gru"))
    assert gru["distribution"] == "sigma-example-gru"
    built = sigma_json(venv, "build", str(GRU / "spec.yaml"), "--dry-run", "--json")
    assert built["spec"]["model"]["memory"]["type"] == "gru"
    res = run(
        venv / "bin" / "python", "-m", "pytest", "-q", "-p", "no:cacheprovider", GRU / "tests"
    )
    assert "8 passed" in res.stdout  # 7 kit checks (2 of a memory's own) + stage sigma training
