"""The Sigma plugin hooks (pluggy project name ``"sigma"``).

A plugin is a module named by an entry point in the ``sigma`` group. It must be
light (no torch at import time) and implement the hooks below with
:data:`hookimpl`. Every hook here is documented in ``docs/plugins.md``; a test
fails when one is missing there.
"""

from __future__ import annotations

from typing import Any, Protocol

import pluggy

hookspec = pluggy.HookspecMarker("sigma")
hookimpl = pluggy.HookimplMarker("sigma")


class RegisterFn(Protocol):
    """The ``register`` callback handed to :func:`sigma_register_components`."""

    def __call__(
        self,
        *,
        kind: str,
        name: str,
        config: type[Any],
        impl: str,
        override: bool = False,
    ) -> None: ...


@hookspec
def sigma_register_components(register: RegisterFn) -> None:
    """Register components by calling ``register`` once per component.

    Args:
        register: callback taking ``kind`` (one of :data:`sigma_core.KINDS`),
            ``name`` (unique within the kind), ``config`` (a pydantic model class,
            registered eagerly and used to validate specs without importing the
            implementation), ``impl`` (``"package.module:Class"``, imported lazily
            on first build). ``override`` is accepted for old plugins and has no
            effect (a ``DeprecationWarning``; removed in 0.3): on a name clash the
            host picks the default (``docs/plugins.md`` §6), never the plugin.

    Since: 0.1.0
    """
