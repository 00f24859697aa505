"""Plugin-author docs cover every hook; all distributions share one version."""

from __future__ import annotations

import inspect
import re
import tomllib
from pathlib import Path

from sigma_core import KINDS, __version__
from sigma_core.components import component_base
from sigma_core.plugins import hookspecs

REPO = Path(__file__).resolve().parents[1]
DOCS = (REPO / "docs" / "plugins.md").read_text()


def hooks() -> list[str]:
    return [
        name
        for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
        if hasattr(fn, "sigma_spec")
    ]


def test_every_hookspec_is_documented_with_since():
    assert hooks() == ["sigma_register_components"]
    for name in hooks():
        assert f"### `{name}(" in DOCS, f"hook {name} missing from docs/plugins.md"
        assert "Since:" in getattr(hookspecs, name).__doc__


def test_every_kind_and_abc_is_documented():
    for kind in KINDS:
        assert f"`{kind}`" in DOCS, f"kind {kind} missing from docs/plugins.md"
    for base in map(component_base, KINDS):
        assert f"`{base.__name__}`" in DOCS, f"{base.__name__} missing from docs/plugins.md"


def test_distributions_share_one_version_and_pin_each_other():
    for pyproject in sorted((REPO / "packages").glob("*/pyproject.toml")):
        project = tomllib.loads(pyproject.read_text())["project"]
        assert project["version"] == __version__, pyproject
        extras = project.get("optional-dependencies", {}).values()
        deps = [*project["dependencies"], *(d for extra in extras for d in extra)]
        for dep in deps:
            if dep.startswith("sigma-vla-"):
                assert re.fullmatch(
                    rf"sigma-vla-[a-z]+(\[[a-z0-9,]+\])?=={re.escape(__version__)}", dep
                ), dep


def test_paper_map_lists_every_builtin_component_and_table1_column():
    from sigma_core import get_registry
    from sigma_core.train.losses import LOG_COLUMNS, TABLE1_COLUMNS

    paper = (REPO / "docs" / "paper.md").read_text()
    builtin = [
        c for c in get_registry().components() if (c.distribution or "").startswith("sigma-vla-")
    ]
    assert len(builtin) >= 20
    for c in builtin:
        assert f"`{c.kind}: {c.name}`" in paper, f"{c.kind}: {c.name} missing from docs/paper.md"
    for column in (*TABLE1_COLUMNS, *LOG_COLUMNS):
        assert f"`{column}`" in paper, f"log column {column} missing from docs/paper.md"
    for term in ("L_act,total", "L_hard", "L_time", "InfoNCE", "L_intent", "L_τ", "L_fuse"):
        assert term in paper, term


def test_spec_reference_is_generated_and_current():
    from sigma_core import get_registry, spec_reference

    current = spec_reference(get_registry())
    assert (REPO / "docs" / "spec.md").read_text() == current, (
        "docs/spec.md is stale: uv run sigma spec --reference > docs/spec.md"
    )
    for key in ("train.lr", "train.warmup_steps", "data.batch_size", "data.run_length"):
        assert f"`{key}`" in current, key
    assert "### `action.trajectory: flow-dit`" in current and "`num_steps`" in current


def test_spec_schema_covers_every_slot_and_component():
    from sigma_core import get_registry, spec_schema

    registry = get_registry()
    schema = spec_schema(registry)
    model = schema["$defs"]["ModelSpec"]["properties"]
    titles = {s["title"] for slot in model.values() if "oneOf" in slot for s in slot["oneOf"]}
    titles |= {s["title"] for s in schema["properties"]["base_policy"]["oneOf"]}
    for c in registry.components():
        if c.kind != "data_source":
            assert f"{c.kind}: {c.name}" in titles
    trajectory = {s["title"]: s for s in model["trajectory"]["oneOf"]}[
        "action.trajectory: flow-dit"
    ]
    assert trajectory["additionalProperties"] is False and "num_steps" in trajectory["properties"]


def test_cli_reference_is_generated_and_current():
    from sigma_cli.reference import cli_reference

    current = cli_reference()
    assert (REPO / "docs" / "cli.md").read_text() == current, (
        "docs/cli.md is stale: uv run python -m sigma_cli.reference > docs/cli.md"
    )
    for command in ("sigma train", "sigma eval", "sigma preprocess", "sigma data sim"):
        assert f"## `{command}`" in current, command
    assert "`--resume`" in current and "`--sim`" in current


def test_readme_python_example_runs_on_a_saved_policy(tmp_path, monkeypatch):
    """The README's Python example, executed as written on a small saved policy."""
    import torch

    from sigma_core import SigmaPolicy, get_registry
    from sigma_core.spec import validate_spec
    from sigma_core.testing import CONTRACT_DIMS

    readme = (REPO / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    assert len(blocks) == 1, "the README has one Python example"
    code = blocks[0]
    path = re.search(r'from_pretrained\("([^"]+)"\)', code).group(1)
    spec = validate_spec({"model": {"dims": CONTRACT_DIMS.model_dump()}}, get_registry())
    torch.manual_seed(0)
    SigmaPolicy(spec).save_pretrained(tmp_path / path)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    d = CONTRACT_DIMS
    assert namespace["action"].shape == (1, d.action_dim)
    assert torch.isfinite(namespace["action"]).all()
    assert namespace["policy"]._memory is not None  # step() planned and kept m_t


def test_markdown_links_resolve():
    """Relative links in the README and docs point at files that exist (anchors not checked)."""
    pages = [REPO / "README.md", REPO / "benchmarks" / "README.md", *(REPO / "docs").glob("*.md")]
    for page in pages:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            assert (page.parent / target.split("#")[0]).exists(), f"{page}: broken link {target}"


def test_package_readmes_have_no_relative_links():
    """Package READMEs are their PyPI pages, where a relative link is broken."""
    for page in sorted((REPO / "packages").glob("*/README.md")):
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            assert re.match(r"https?:", target), f"{page}: relative link {target} breaks on PyPI"


def test_suite_size_is_not_hand_copied():
    pages = [REPO / "README.md", *(REPO / "docs").glob("*.md")]
    pages += sorted((REPO / "packages").glob("*/README.md"))
    for page in pages:
        assert not re.search(r"\b\d[\d,]* tests\b", page.read_text()), page
