"""Deprecated alias of :mod:`sigma_core.plugins.hookspecs` (removed in 0.3)."""

from sigma_core._deprecated import alias_module

alias_module(__name__, "sigma_core.plugins.hookspecs")
