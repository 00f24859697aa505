"""Shared console objects and the user-error decorator of the ``sigma`` commands."""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from collections.abc import Callable, Iterator
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


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Send everything written to stdout inside the block to stderr.

    Python's ``sys.stdout`` and, where stdout is a real file descriptor, fd 1 itself
    (C libraries, child processes started inside), so that a command's stdout holds
    only its result (``--json``) while progress lines and library messages still
    show. Restored on exit, after flushing what was buffered inside.
    """
    _flush_all()
    fd, saved = -1, None
    try:
        fd = sys.__stdout__.fileno()  # type: ignore[union-attr]
        saved = os.dup(fd)
        os.dup2(sys.__stderr__.fileno(), fd)  # type: ignore[union-attr]
    except (AttributeError, OSError, ValueError):  # no real descriptors (an embedding host)
        saved = None
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        _flush_all()
        if saved is not None:
            os.dup2(saved, fd)
            os.close(saved)


def _flush_all() -> None:
    """Flush Python's streams and the C library's stdio buffers (``fflush(NULL)``)."""
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        with contextlib.suppress(AttributeError, OSError, ValueError):
            stream.flush()  # type: ignore[union-attr]
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None).fflush(None)


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
