"""Test support stays in each package's testing room: no production module loads one."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROOMS = (
    "lerobot_env_sigma.testing",
    "sigma_core.testing",
    "sigma_intent.testing",
    "sigma_lerobot.testing",
    "sigma_pi05.testing",
)


def production_modules() -> list[str]:
    """Every module under packages/*/src except the testing rooms and ``__main__``."""
    names = []
    for src in sorted(REPO.glob("packages/*/src")):
        for path in sorted(src.rglob("*.py")):
            parts = path.relative_to(src).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            name = ".".join(parts)
            if parts[-1] == "__main__" or any(name.startswith(room) for room in ROOMS):
                continue
            names.append(name)
    return names


def test_importing_every_production_module_loads_no_testing_room():
    modules = production_modules()
    assert "sigma_pi05.loading" in modules and "sigma_lerobot.base" in modules
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        f"loaded = sorted(m for m in sys.modules if m.startswith({ROOMS!r}))\n"
        "print(loaded)\n"
        "assert not loaded, loaded\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]


def test_the_import_linter_contract_names_every_production_module():
    """The forbidden contract in pyproject.toml lists modules explicitly: keep it complete."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    (contract,) = [c for c in config["contracts"] if "testing rooms" in c["name"]]
    assert sorted(contract["forbidden_modules"]) == sorted(ROOMS)
    expected = {m for m in production_modules() if "." in m and not m.startswith("sigma_core")}
    assert set(contract["source_modules"]) == expected
