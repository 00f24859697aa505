"""Sigma-VLA action workspace components (paper §3)."""

from sigma_core import __version__

__all__ = ["__version__"]
