"""The device of ``sigma eval``: ``auto`` (CUDA if torch sees one, else CPU), ``cpu``, ``cuda``."""

from __future__ import annotations

import torch

from sigma_core.errors import SigmaUserError

#: The choices of ``sigma eval --device``.
DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str) -> torch.device:
    """The torch device for ``name`` (one of :data:`DEVICES`; ``cuda:N`` picks a GPU).

    Raises:
        SigmaUserError: an unknown name, or ``cuda`` when torch sees no CUDA device
            (or not that many).
    """
    kind, _, index = name.partition(":")
    if kind not in DEVICES or (index and (kind != "cuda" or not index.isdigit())):
        raise SigmaUserError(f"--device {name!r}: choose one of {', '.join(DEVICES)} (or cuda:N)")
    if kind == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise SigmaUserError(
                f"--device {name}: no CUDA device is visible to torch "
                f"(torch {torch.__version__}, built with CUDA {torch.version.cuda}); "
                "use --device cpu"
            )
        if index and int(index) >= torch.cuda.device_count():
            raise SigmaUserError(
                f"--device {name}: torch sees {torch.cuda.device_count()} CUDA device(s)"
            )
    return torch.device(name)


__all__ = ["DEVICES", "resolve_device"]
