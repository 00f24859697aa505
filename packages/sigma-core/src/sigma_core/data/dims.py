"""One check that data (or a base policy) has the shapes a spec's ``model.dims`` expects."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sigma_core.config import Dims
from sigma_core.errors import SigmaUserError

#: Dims fields that shards record (``meta.json``) and that a model must match.
DATA_DIMS = ("action_dim", "state_dim", "horizon", "chunk_horizon", "cameras", "image_size")


def shard_dims(meta: Mapping[str, Any]) -> dict[str, Any]:
    """The :data:`DATA_DIMS` of a shard directory, read from its ``meta.json`` content."""
    opts, stats = meta["options"], meta["stats"]
    return {
        "action_dim": len(stats["action"]["mean"]),
        "state_dim": len(stats["observation.state"]["mean"]),
        "horizon": opts["horizon"],
        "chunk_horizon": opts["chunk"],
        "cameras": list(opts["cameras"]),
        "image_size": opts["image_size"],
    }


def check_dims(dims: Dims, have: Mapping[str, Any], source: str, what: str = "data") -> None:
    """Raise one error naming every field of ``have`` that differs from ``dims``.

    Args:
        dims: the spec's ``model.dims``.
        have: field -> value found in ``source`` (only these fields are compared).
        source: what is being checked (a path, a dataset id), first in the message.
        what: how the message names ``source``'s values (``data``, ``base`` ...).

    Raises:
        SigmaUserError: ``"<source> does not match the spec's model.dims: action_dim:
            data 7, spec 6; ..."``.
    """
    wrong = [
        f"{key}: {what} {value}, spec {getattr(dims, key)}"
        for key, value in have.items()
        if value != getattr(dims, key)
    ]
    if wrong:
        raise SigmaUserError(f"{source} does not match the spec's model.dims: " + "; ".join(wrong))
