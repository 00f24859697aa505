"""The public facade: its names are pinned, light, and old 0.1 paths still work (warning)."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import sigma_core

REPO = Path(__file__).resolve().parents[3]

PUBLIC = [
    "KINDS",
    "MODEL_SLOTS",
    "ActionQuery",
    "ActionSet",
    "AdapterOutput",
    "Backbone",
    "BackboneOutput",
    "BasePolicy",
    "ChunkBranch",
    "Component",
    "ComponentInfo",
    "ComponentRef",
    "Controller",
    "DataSource",
    "Dims",
    "Fusion",
    "InferenceAdapter",
    "IntentOutput",
    "IntentWorkspace",
    "MemoryFn",
    "QueryOutput",
    "RegisterFn",
    "Registry",
    "ResidualHead",
    "SemanticMemory",
    "SigmaBatch",
    "SigmaOutput",
    "SigmaPolicy",
    "SigmaSpec",
    "SigmaUserError",
    "SpecError",
    "StrictModel",
    "TrajectoryBranch",
    "UnknownComponentError",
    "VectorBranch",
    "VisionOutput",
    "VisionWorkspace",
    "__version__",
    "atomic_dir",
    "atomic_write_bytes",
    "build_component",
    "build_policy",
    "get_registry",
    "hookimpl",
    "hookspec",
    "is_internal_error",
    "load_registry",
    "load_spec",
    "local_directory",
    "make_portable",
    "parameter_counts",
    "register_pretrained",
    "resolve_bundled",
    "sha256_file",
    "shared",
    "sharing",
    "source_record",
    "spec_reference",
    "spec_schema",
    "validate_spec",
    "weights_fingerprint",
]


def test_all_is_pinned_and_every_name_resolves() -> None:
    assert sigma_core.__all__ == PUBLIC  # changing the public API is a decision, not a side effect
    for name in PUBLIC:
        assert getattr(sigma_core, name) is not None, name


def test_the_facade_imports_no_torch() -> None:
    code = "import sys, sigma_core; sigma_core.get_registry(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("sigma_core.hookspecs", "sigma_core.plugins.hookspecs"),
        ("sigma_core.registry", "sigma_core.plugins.registry"),
    ],
)
def test_moved_modules_still_import_with_a_warning(old: str, new: str) -> None:
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=rf"{old} is deprecated: import {new} instead"):
        module = importlib.import_module(old)
    assert module is importlib.import_module(new)


@pytest.mark.parametrize("name", ["StrictModel", "Dims"])
def test_spec_names_moved_to_config_warn(name: str) -> None:
    from sigma_core import config, spec

    with pytest.warns(DeprecationWarning, match=rf"sigma_core.spec.{name} is deprecated"):
        value = getattr(spec, name)
    assert value is getattr(config, name)
    with pytest.raises(AttributeError):
        spec.NoSuchName  # noqa: B018


def test_new_paths_do_not_warn() -> None:
    """In a fresh interpreter (nothing cached), the public paths import with warnings as errors."""
    code = (
        "from sigma_core import ChunkBranch, StrictModel, hookimpl; "
        "from sigma_core.testing import ComponentContract; "
        "from sigma_core.train import Trainer; from sigma_core.eval import evaluate"
    )
    out = subprocess.run(
        [sys.executable, "-W", "error::DeprecationWarning:sigma_core", "-c", code],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    old = subprocess.run(
        [sys.executable, "-W", "error::DeprecationWarning", "-c", "import sigma_core.hookspecs"],
        capture_output=True,
        text=True,
    )
    assert old.returncode != 0 and "sigma_core.hookspecs is deprecated" in old.stderr


def _private_imports(path: Path) -> list[str]:
    """``from X import _name`` (not dunder): a private name used outside its module."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append(f"{path.relative_to(REPO)}:{node.lineno} {alias.name}")
    return found


def test_no_module_imports_another_modules_private_names() -> None:
    files = [*REPO.glob("packages/*/src/**/*.py"), *REPO.glob("packages/*/tests/*.py")]
    files += [*REPO.glob("tests/*.py"), *REPO.glob("benchmarks/*.py")]
    bad = [hit for f in sorted(files) for hit in _private_imports(f)]
    assert not bad, bad


def test_layer_contracts_hold() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    out = subprocess.run([str(lint)], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:]
    assert "4 kept, 0 broken" in out.stdout
