"""User-facing error types.

Every error a user can cause (bad spec, unknown component, broken plugin) is a
:class:`SigmaUserError`; the CLI prints its message and exits with code 2 instead
of showing a traceback.
"""

from __future__ import annotations


class SigmaUserError(Exception):
    """An error caused by user input; its message says what, where and what to do."""

    exit_code: int = 2


#: Never the user's doing: they pass through a wrapper instead of becoming exit code 2.
INTERNAL_ERRORS: tuple[type[BaseException], ...] = (
    MemoryError,
    RecursionError,
    NameError,
    AssertionError,
)


def is_internal_error(exc: BaseException) -> bool:
    """True for out-of-memory and programming errors, which must not read as user errors.

    A loader that wraps "anything that went wrong" as :class:`SigmaUserError`
    re-raises these unchanged (``if is_internal_error(e): raise``), so that
    running out of memory is not reported as "cannot load ..., exit 2". torch's
    ``OutOfMemoryError`` (a ``RuntimeError``) is recognised by name, so this
    module imports no torch.
    """
    return isinstance(exc, INTERNAL_ERRORS) or type(exc).__name__ == "OutOfMemoryError"


class UnknownKindError(SigmaUserError):
    """A component kind that Sigma does not define."""


class UnknownComponentError(SigmaUserError):
    """A component name that no loaded plugin registered."""


class DuplicateComponentError(SigmaUserError):
    """A (kind, name) registered twice where that is an error.

    Directly on a :class:`~sigma_core.plugins.Registry` without ``override=True``;
    through plugins only in strict mode (``SIGMA_STRICT_PLUGINS=1``).
    """


class PluginLoadError(SigmaUserError):
    """A plugin failed to import or register (raised only in strict mode)."""


class SpecError(SigmaUserError):
    """A run spec failed validation; ``problems`` holds every error found."""

    def __init__(self, source: str, problems: list[SpecProblem]) -> None:
        self.source = source
        self.problems = problems
        n = len(problems)
        lines = [f"{source}: {n} problem{'s' if n != 1 else ''} in the spec"]
        lines += [f"  {p.render(source)}" for p in problems]
        super().__init__("\n".join(lines))


class SpecProblem:
    """One validation problem: a dotted key path, the YAML line (if known) and a message."""

    __slots__ = ("line", "message", "path")

    def __init__(self, path: str, message: str, line: int | None = None) -> None:
        self.path = path
        self.message = message
        self.line = line

    def render(self, source: str) -> str:
        where = f"{source}:{self.line}" if self.line else source
        key = f" {self.path}:" if self.path else ""
        return f"{where}{key} {self.message}"

    def as_dict(self) -> dict[str, object]:
        return {"path": self.path, "line": self.line, "message": self.message}

    def __repr__(self) -> str:
        return f"SpecProblem({self.path!r}, {self.message!r}, line={self.line})"
