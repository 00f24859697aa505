"""The ``sigma`` command.

Start-up stays light: ``sigma --help``, ``sigma --version``, ``sigma plugins``
and ``sigma build --dry-run`` never import torch (a test checks ``sys.modules``).
User errors print one screen naming the file, key and line and exit with code 2;
``--debug`` shows the traceback as well.
"""

from __future__ import annotations

import contextlib
import json
import sys
from importlib import metadata
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from sigma_cli.data import data_app, preprocess
from sigma_cli.evaluate import evaluate
from sigma_cli.quickstart import quickstart
from sigma_cli.share import export, push
from sigma_cli.train import dagger, declutter, train
from sigma_cli.ui import STATE, out, user_errors
from sigma_core import SigmaSpec, SigmaUserError, SpecError, __version__, load_spec

app = typer.Typer(
    name="sigma",
    help="Sigma-VLA: telepathy heads for vision-language-action policies.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _versions() -> list[tuple[str, str]]:
    from sigma_core import get_registry

    names = {"sigma-vla-core", "sigma-vla-cli", "sigma-vla-vision", "sigma-vla-intent"}
    names |= {"sigma-vla-action", "sigma-vla-lerobot", "sigma-vla-sim"}
    # In strict mode a broken plugin raises here; still report what we can.
    with contextlib.suppress(SigmaUserError):
        names |= {p.distribution for p in get_registry().plugins if p.distribution}
    found = []
    for name in sorted(names):
        try:
            found.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            continue
    return found


def _version_callback(value: bool) -> None:
    if value:
        out.print(f"sigma-vla {__version__}")
        for name, version in _versions():
            out.print(f"  {name} {version}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_version_callback,
            is_eager=True,
            help="Show the version of Sigma-VLA and of each installed component package.",
        ),
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks of errors.")] = False,
) -> None:
    """Sigma-VLA: telepathy heads for vision-language-action policies."""
    STATE["debug"] = debug


@app.command()
@user_errors
def plugins(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List registered components and plugins (including failed ones and why)."""
    from sigma_core import get_registry

    registry = get_registry()
    if as_json:
        payload = {
            "components": [c.as_dict() for c in registry.components()],
            "plugins": [p.as_dict() for p in registry.plugins],
            "clashes": [c.as_dict() for c in registry.clashes],
        }
        out.print_json(json.dumps(payload))
        return
    table = Table(title="Sigma components", title_justify="left")
    for col in ("kind", "name", "distribution", "version", "status"):
        table.add_column(col, overflow="fold")  # long distribution names wrap, never cut
    for c in registry.components():
        for i, p in enumerate(registry.providers(c.kind, c.name)):
            status = (
                "ok"
                if len(registry.providers(c.kind, c.name)) == 1
                else ("clash: used" if i == 0 else "clash: on `from:`")
            )
            table.add_row(c.kind, c.name, p.distribution or "-", p.version or "-", status)
    out.print(table)
    if registry.clashes:
        clashes = Table(title="Name clashes", title_justify="left")
        clashes.add_column("clash", overflow="fold")
        for clash in registry.clashes:
            clashes.add_row(clash.message())
        out.print(clashes)
    broken = [p for p in registry.plugins if p.status != "ok"]
    if broken:
        bad = Table(title="Plugins not loaded", title_justify="left")
        for col in ("plugin", "distribution", "status", "error"):
            bad.add_column(col, overflow="fold")
        for p in broken:
            bad.add_row(p.name, p.distribution or "-", p.status, p.error or "")
        out.print(bad)


def _slot_rows(spec: SigmaSpec) -> list[dict[str, Any]]:
    from sigma_core import get_registry

    registry = get_registry()
    rows = []
    for slot, (kind, ref) in spec.slots().items():
        info = registry.get(kind, ref.type, ref.provider)
        rows.append(
            {
                "slot": slot,
                "kind": kind,
                "type": ref.type,
                "distribution": info.distribution,
                "version": info.version,
                "params": ref.params,
            }
        )
    return rows


@app.command()
@user_errors
def build(
    spec_path: Annotated[Path, typer.Argument(metavar="SPEC", help="Run spec (YAML).")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Validate names and parameters; build nothing.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Validate a spec and build the model, printing the component tree and parameter counts."""
    try:
        spec = load_spec(spec_path)
    except SpecError as exc:
        if as_json:
            out.print_json(
                json.dumps({"valid": False, "problems": [p.as_dict() for p in exc.problems]})
            )
        raise
    rows = _slot_rows(spec)
    if dry_run:
        if as_json:
            out.print_json(json.dumps({"valid": True, "spec": spec.model_dump(mode="json")}))
            return
        table = Table(title=f"{spec_path}: valid ({len(rows)} components)", title_justify="left")
        for col in ("slot", "kind", "type", "distribution"):
            table.add_column(col)
        for r in rows:
            table.add_row(r["slot"], r["kind"], r["type"], r["distribution"] or "-")
        out.print(table)
        return
    _print_built(spec, rows, as_json)


def _print_built(spec: SigmaSpec, rows: list[dict[str, Any]], as_json: bool) -> None:
    from sigma_core import build_policy, parameter_counts

    policy = build_policy(spec)
    total = parameter_counts(policy)
    for row, (_, module) in zip(rows, policy.named_components(), strict=True):
        row["trainable"], row["frozen"] = parameter_counts(module)
        row["children"] = [
            {"name": n, "trainable": t, "frozen": f}
            for n, child in module.named_children()
            for t, f in [parameter_counts(child)]
        ]
        # parameters held directly on the component, so that its rows add up
        own = [p for p in module.parameters(recurse=False)]
        if own and row["children"]:
            t = sum(p.numel() for p in own if p.requires_grad)
            f = sum(p.numel() for p in own if not p.requires_grad)
            row["children"].append({"name": "(own)", "trainable": t, "frozen": f})
    if as_json:
        payload = {"components": rows, "trainable": total[0], "frozen": total[1]}
        out.print_json(json.dumps(payload))
        return
    table = Table(title="SigmaPolicy", title_justify="left")
    for col, justify in (
        ("component", "left"),
        ("type", "left"),
        ("distribution", "left"),
        ("trainable", "right"),
        ("frozen", "right"),
    ):
        table.add_column(col, justify=justify, no_wrap=col == "component", overflow="fold")  # type: ignore[arg-type]
    for r in rows:
        table.add_row(
            f"[bold]{r['slot']}[/]",
            r["type"],
            r["distribution"] or "-",
            f"{r['trainable']:,}",
            f"{r['frozen']:,}",
        )
        for c in r["children"]:
            table.add_row(f"  └ {c['name']}", "", "", f"{c['trainable']:,}", f"{c['frozen']:,}")
    table.add_section()
    table.add_row("[bold]total[/]", "", "", f"{total[0]:,}", f"{total[1]:,}")
    out.print(table)


@app.command()
@user_errors
def spec(
    schema: Annotated[
        bool, typer.Option("--schema", help="Print the run spec's JSON Schema (for editors).")
    ] = False,
    reference: Annotated[
        bool, typer.Option("--reference", help="Print the Markdown reference (docs/spec.md).")
    ] = False,
) -> None:
    """Describe the run spec: every section, key, type and default; every component's parameters.

    The JSON Schema covers every installed component, so a YAML language server can
    complete and check a spec: add ``# yaml-language-server: $schema=spec.json``.
    """
    from sigma_core import get_registry, spec_reference, spec_schema

    if schema == reference:
        raise SigmaUserError("give exactly one of --schema and --reference")
    if schema:
        sys.stdout.write(json.dumps(spec_schema(get_registry()), indent=2) + "\n")
    else:
        sys.stdout.write(spec_reference(get_registry()))


app.add_typer(data_app, name="data")
app.command()(preprocess)
app.command()(train)
app.command()(dagger)
app.command()(declutter)
app.command(name="eval")(evaluate)
app.command()(quickstart)
app.command()(export)
app.command()(push)


def run() -> None:
    """Console-script entry point."""
    app(prog_name="sigma")


if __name__ == "__main__":
    sys.exit(run())
