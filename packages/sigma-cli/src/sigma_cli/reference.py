"""The ``sigma`` command's Markdown reference (``docs/cli.md``), generated from the command tree.

Regenerate with ``uv run python -m sigma_cli.reference > docs/cli.md``; a test
fails when the file is stale. The text is built from the commands' own help
strings and parameter declarations (not from ``--help``'s rendering, which
depends on the terminal), so it is the same on every machine.
"""

from __future__ import annotations

import enum
import inspect
import sys
import types
import typing
from pathlib import Path
from typing import Any

HEADER = """# The `sigma` command

Generated from the command itself: `uv run python -m sigma_cli.reference > docs/cli.md`
(a test fails when this file is stale). `sigma COMMAND --help` prints the same.
Examples with real output are in [guide.md](guide.md).

Global options (before the command): `--debug` shows the traceback of an error
(a user error otherwise prints one message and exits with code 2), `--version`
lists the installed Sigma distributions.
"""

_SCALARS = {int: "INTEGER", float: "FLOAT", str: "TEXT", Path: "PATH", bool: "BOOLEAN"}


def _type_name(annotation: Any) -> str:
    """A short, stable name for a parameter's annotation: ``PATH``, ``INTEGER``, ``[a|b]``."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        names = [_type_name(a) for a in typing.get_args(annotation) if a is not type(None)]
        return " | ".join(names)
    if origin in (list, tuple):
        args = [a for a in typing.get_args(annotation) if a is not Ellipsis]
        return f"{_type_name(args[0])}..." if args else "TEXT..."
    if origin is typing.Literal:
        return "[" + "|".join(str(a) for a in typing.get_args(annotation)) + "]"
    if inspect.isclass(annotation) and issubclass(annotation, enum.Enum):
        return "[" + "|".join(str(m.value) for m in annotation) + "]"
    return _SCALARS.get(annotation, getattr(annotation, "__name__", str(annotation)).upper())


def _cell(text: str | None) -> str:
    return " ".join((text or "").split()).replace("|", "\\|")


def _default(param: Any) -> str:
    if param.required:
        return "required"
    default = param.default
    if getattr(param, "is_flag", False) and param.secondary_opts:
        return f"`{param.opts[0] if default else param.secondary_opts[0]}`"
    if default is None or default == [] or default == ():
        return ""
    if isinstance(default, enum.Enum):
        default = default.value
    return f"`{default}`"


def _command_section(path: str, command: Any) -> list[str]:
    lines = [f"## `{path}`", ""]
    help_text = inspect.cleandoc(command.help or "").replace("\b\n", "")
    if help_text:
        lines += [help_text, ""]
    arguments = [p for p in command.params if not p.opts[0].startswith("-") and not p.hidden]
    options = [p for p in command.params if p.opts[0].startswith("-") and not p.hidden]
    usage = [path]
    usage += ["[OPTIONS]"] if options else []
    for p in arguments:
        name = p.metavar or p.name.upper()
        usage.append(name if p.required else f"[{name}]")
    lines += ["```", " ".join(usage), "```", ""]
    if arguments or options:
        lines += ["| parameter | type | default | description |", "|---|---|---|---|"]
    for p in arguments:
        name = p.metavar or p.name.upper()
        kind = _type_name(p.type_descriptor.annotation)
        lines.append(f"| `{name}` | {kind} | {_default(p)} | {_cell(p.help)} |")
    for p in options:
        names = " / ".join(f"`{o}`" for o in (*p.opts, *p.secondary_opts))
        annotation = p.type_descriptor.annotation
        if p.multiple and typing.get_origin(annotation) is list:
            annotation = typing.get_args(annotation)[0]
        kind = "" if p.is_flag else _type_name(annotation)
        if p.multiple:
            kind += " (repeatable)"
        lines.append(f"| {names} | {kind} | {_default(p)} | {_cell(p.help)} |")
    return [*lines, ""]


def _walk(prefix: str, group: Any) -> list[str]:
    lines: list[str] = []
    for name in sorted(group.commands):
        command = group.commands[name]
        if command.hidden:
            continue
        path = f"{prefix} {name}"
        if hasattr(command, "commands"):
            lines += _walk(path, command)
        else:
            lines += _command_section(path, command)
    return lines


def cli_reference() -> str:
    """The Markdown reference of every ``sigma`` command: usage, parameters, defaults, help."""
    import typer.main

    from sigma_cli.main import app

    root = typer.main.get_command(app)
    body = _walk("sigma", root)
    return HEADER + "\n" + "\n".join(body).rstrip("\n") + "\n"


if __name__ == "__main__":
    sys.stdout.write(cli_reference())
