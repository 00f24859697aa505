"""The ``sigma`` command-line tool of Sigma-VLA."""

from sigma_core import __version__

__all__ = ["__version__"]
