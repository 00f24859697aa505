"""Out of process: install the example plugin into a fresh virtual environment and use it.

The environment holds the Sigma distributions (core, cli and the default
components, installed as wheels from this checkout), the example plugin and a
plugin fixture that raises on import. Normal and editable installs are both
checked, and the example's own contract tests run there with the shipped kit.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "sigma-example-chunk"
BROKEN = REPO / "tests" / "fixtures" / "sigma-broken-plugin"


def uv() -> str:
    found = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
    assert found, "uv is part of the dev dependency group"
    return found


def run(*cmd: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(
        [str(c) for c in cmd],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )
    assert res.returncode == 0, f"{cmd} failed:\n{res.stdout}\n{res.stderr}"
    return res


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("plugin-env") / "venv"
    run(uv(), "venv", "--quiet", "--python", sys.executable, root)
    py = root / "bin" / "python"
    # Resolve against the same lock as the workspace so nothing new is downloaded.
    constraints = root.parent / "constraints.txt"
    exported = run(
        uv(),
        "export",
        "--quiet",
        "--no-hashes",
        "--frozen",
        "--no-emit-workspace",
        "--all-packages",
        "--directory",
        REPO,
    ).stdout
    constraints.write_text(exported)
    pkgs = [
        REPO / "packages" / p
        for p in ("sigma-core", "sigma-vision", "sigma-intent", "sigma-action", "sigma-cli")
    ]
    run(
        uv(),
        "pip",
        "install",
        "--quiet",
        "--python",
        py,
        "-c",
        constraints,
        *pkgs,
        EXAMPLE,
        BROKEN,
        "pytest",
    )
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
    assert "5 passed" in res.stdout
