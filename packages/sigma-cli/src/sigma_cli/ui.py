"""Shared console objects and the user-error decorator of the ``sigma`` commands."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from sigma_core import SigmaUserError

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)
STATE = {"debug": False}


def user_errors[F: Callable[..., Any]](fn: F) -> F:
    """Turn :class:`SigmaUserError` into a short message and exit code 2.

    Ctrl-C exits with 130 and a one-line note instead of a traceback: every
    long-running command writes atomically, so the same command (with
    ``--resume`` for ``sigma train``) continues where it stopped.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except SigmaUserError as exc:
            if STATE["debug"]:
                err.print_exception()
            err.print(f"[bold red]error:[/] {exc}", markup=True, highlight=False)
            if not STATE["debug"]:
                err.print("(run with --debug for the traceback)", style="dim")
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            if STATE["debug"]:
                raise
            err.print("interrupted: finished work is saved; run the same command again to go on")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def progress_columns(label: str, *extra: ProgressColumn) -> tuple[ProgressColumn, ...]:
    """The columns of every sigma progress bar: label, bar, n/total, elapsed, ETA, extras."""
    return (
        TextColumn(f"[bold]{label}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        *extra,
    )
