"""The action representation a policy is trained in (spec ``data.actions``).

``absolute`` (the paper's): the policy predicts the dataset's joint targets,
normalized ``a_n = (a − μ_a) / σ_a`` with the train split's action statistics.

``relative``: the policy predicts each target as a delta from the robot state
of the window's observation frame, normalized by the deltas' own statistics::

    d_k = a_{t+k} − s_t[:A]          (dataset units, k = 0 .. T−1)
    d_n = (d_k − μ_d) / σ_d          (μ_d, σ_d: meta.json ``stats["action.relative"]``,
                                      over every train window and k, per dimension)

so that the state no longer predicts most of the target (joint angles are close
to the next joint targets: an absolute policy learns to copy them and ignore
its cameras). Every consumer outside training sees absolute normalized actions:
:meth:`ActionSpace.decode` turns a relative plan back, with the state the plan
was made from, ``a_n = (d_n σ_d + μ_d + s_t[:A] − μ_a) / σ_a``. Action ``i`` is
relative to state ``i``: the first A state entries must be the joints the
actions command (the SO-101 schema: 6 joints, gripper last, in both).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import torch

from sigma_core.data.stats import Normalizer, feature_stats
from sigma_core.errors import SigmaUserError

ActionMode = Literal["absolute", "relative"]
#: meta.json ``stats`` key of the relative actions' statistics.
RELATIVE_STATS = "action.relative"


def relative_stats(trajectory: np.ndarray, state: np.ndarray) -> dict[str, list[float]]:
    """Statistics of ``trajectory[w, k] − state[w, :A]`` over every window w and step k.

    Args:
        trajectory: (Nw, T, A) window targets in dataset units.
        state: (Nw, S) the state of each window's observation frame, S >= A.
    """
    a = trajectory.shape[-1]
    deltas = trajectory - state[:, None, :a]
    return feature_stats(deltas.reshape(-1, a))


class ActionSpace:
    """Converts between absolute normalized actions and a policy's own representation.

    Args:
        mode: ``absolute`` (encode and decode are the identity) or ``relative``.
        stats: meta.json ``stats`` (``action``, ``observation.state`` and, for
            ``relative``, :data:`RELATIVE_STATS`).
        source: named in errors (the shard directory).

    Raises:
        SigmaUserError: ``relative`` with statistics that lack :data:`RELATIVE_STATS`
            (shards preprocessed by an older version) or fewer state than action entries.
    """

    def __init__(
        self, mode: ActionMode, stats: Mapping[str, Any], source: str = "meta.json"
    ) -> None:
        self.mode = mode
        self.action = Normalizer(stats["action"])
        self.state = Normalizer(stats["observation.state"])
        self.relative: Normalizer | None = None
        if mode == "relative":
            a, s = len(stats["action"]["mean"]), len(stats["observation.state"]["mean"])
            if s < a:
                raise SigmaUserError(
                    f"{source}: data.actions relative needs a state entry per action entry "
                    f"(action {a}, state {s})"
                )
            if RELATIVE_STATS not in stats:
                raise SigmaUserError(
                    f"{source}: no statistics of relative actions ({RELATIVE_STATS}); the "
                    "shards predate data.actions: relative. Run sigma preprocess again into "
                    "a new --out"
                )
            self.relative = Normalizer(stats[RELATIVE_STATS])

    def _state_units(self, x: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        s = self.state.denormalize(state)[..., : x.shape[-1]]
        return s.unsqueeze(-2) if x.dim() > state.dim() else s

    def encode(self, actions: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """Absolute normalized actions (..., [K,] A) -> the policy's representation.

        ``state`` is the normalized state the actions are relative to, (..., S).
        """
        if self.relative is None:
            return actions
        delta = self.action.denormalize(actions) - self._state_units(actions, state)
        return self.relative.normalize(delta)

    def decode(self, actions: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """The policy's representation (..., [K,] A) -> absolute normalized actions."""
        if self.relative is None:
            return actions
        absolute = self.relative.denormalize(actions) + self._state_units(actions, state)
        return self.action.normalize(absolute)


__all__ = ["RELATIVE_STATS", "ActionMode", "ActionSpace", "relative_stats"]
