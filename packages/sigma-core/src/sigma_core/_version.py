"""Single source of the lockstep version shared by every sigma-vla-* distribution."""

__version__ = "0.1.0"
