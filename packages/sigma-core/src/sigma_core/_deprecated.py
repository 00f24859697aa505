"""Old import paths kept for one release (0.2); each use warns with the new path.

Paths that plugin authors could have used before sigma-core was split into
rooms (``sigma_core.hookspecs``, ``sigma_core.registry``, ``sigma_core.spec.StrictModel``
...) keep working: a shim module calls :func:`alias_module`, a module with moved
names sets ``__getattr__ = moved_names(...)``. Both are removed in 0.3.
"""

from __future__ import annotations

import importlib
import sys
import warnings
from collections.abc import Callable, Mapping
from typing import Any

REMOVED_IN = "0.3"


def _warn(old: str, new: str) -> None:
    warnings.warn(
        f"{old} is deprecated: import {new} instead (the old path goes in {REMOVED_IN})",
        DeprecationWarning,
        stacklevel=3,
    )


def alias_module(old: str, new: str) -> None:
    """Make module ``old`` an alias of ``new`` (same object in ``sys.modules``), warning once."""
    _warn(old, new)
    sys.modules[old] = importlib.import_module(new)


def moved_names(module: str, names: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that serves ``name -> new module`` with a warning."""

    def __getattr__(name: str) -> Any:
        if name in names:
            _warn(f"{module}.{name}", f"{name} from {names[name]}")
            return getattr(importlib.import_module(names[name]), name)
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return __getattr__
