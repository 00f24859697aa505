"""Sigma-VLA vision workspace components (paper §1)."""

from sigma_core import __version__

__all__ = ["__version__"]
