"""Sigma-VLA language-intent workspace components (paper §2)."""

from sigma_core import __version__

__all__ = ["__version__"]
