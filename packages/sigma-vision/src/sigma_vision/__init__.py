"""Sigma-VLA vision workspace components (paper §1)."""

from sigma_core._version import __version__

__all__ = ["__version__"]
