"""Sigma-VLA action workspace components (paper §3)."""

from sigma_core._version import __version__

__all__ = ["__version__"]
