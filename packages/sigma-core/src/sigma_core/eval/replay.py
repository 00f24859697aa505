"""Offline replay on held-out episodes (paper §5, CHECK B): every group's actions, window by window.

A *group* is a way of acting: a saved policy's adapted actions (``NAME``), the
same without the adapter (``NAME:no-adapter``, ``a_base + Δa``) and its frozen
base (``NAME:base``, ``a_base``) for a stage-sigma policy; a stage-base policy is
one group, its τ = 0 actions. Every group acts on the same windows: each held-out
episode from its first window, then every ``stride`` frames (the replanning
stride), with the semantic memory carried from plan to plan as
``SigmaPolicy.step`` carries it. Per window and group:

* ``mse_vec``, ``mse_chk``, ``mse_trj``: ``mean((a − a*)²)`` per scale, in normalized
  units, and ``*_units`` the same in the dataset's units (degrees, gripper 0-100);
* ``tau_l2 = ‖τ‖``; ``sem_align = cos(z_pool, c_text + c_env)``, the alignment of the
  pooled semantic factor with its text-and-scene key (the positive pair of L_sem's
  InfoNCE); both are 0 for a base group;
* ``adapter_scale``: the adapter's residual scale (1 without adapter, 0 for a base);
* ``image_reliance``: does the group look at its cameras? ``mean((a'_trj − a_trj)²)``
  (normalized) where ``a'`` is the same group's trajectory with the window's images
  replaced by those of another held-out episode at the same step (the next episode
  in order, or with a single held-out episode the same one half its length later;
  same state, text, memory and sampler noise). 0 means the plan ignores the
  images; compare it with ``mse_trj``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from sigma_core.data import ActionSpace, ShardDataset, collate
from sigma_core.errors import SigmaUserError
from sigma_core.model.checkpoint import META
from sigma_core.model.policy import SigmaPolicy
from sigma_core.types import ActionSet, SigmaBatch, SigmaOutput

METRICS = (
    "mse_vec",
    "mse_chk",
    "mse_trj",
    "mse_vec_units",
    "mse_chk_units",
    "mse_trj_units",
    "tau_l2",
    "sem_align",
    "adapter_scale",
    "image_reliance",
)
#: the pathway's columns of a group that has none (a base)
NO_PATHWAY = {"tau_l2": 0.0, "sem_align": 0.0, "adapter_scale": 0.0}


@dataclass
class Source:
    """One argument of ``sigma eval``: a saved policy and the groups it yields."""

    name: str
    directory: Path
    policy: SigmaPolicy

    @property
    def telepathy(self) -> bool:
        """Whether the policy was trained in stage sigma (so it has a telepathy pathway)."""
        return self.policy.spec.train.stage == "sigma"

    @property
    def groups(self) -> list[str]:
        if self.telepathy:
            return [self.name, f"{self.name}:no-adapter", f"{self.name}:base"]
        return [self.name]


def load_source(path: str | Path, name: str | None = None) -> Source:
    """A run directory (its ``policy/``) or a saved policy directory, loaded for evaluation.

    Raises:
        SigmaUserError: neither holds a saved policy (names the file that is missing).
    """
    path = Path(path)
    directory = path / "policy" if (path / "policy" / META).is_file() else path
    if not (directory / META).is_file():
        hint = " (a run that has not finished: no policy/ yet)" if (path / "last").exists() else ""
        raise SigmaUserError(f"{path}: no saved policy ({META} missing){hint}")
    policy = SigmaPolicy.from_pretrained(directory).eval()
    return Source(name or (path.name if directory != path else directory.name), directory, policy)


def _mse(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).pow(2).mean().item()


def _metrics(
    actions: ActionSet, batch: SigmaBatch, ds: ShardDataset, extra: dict[str, float]
) -> dict[str, float]:
    t, norm = batch.targets, ds.action_norm
    assert t is not None
    row = {
        "mse_vec": _mse(actions.vector, t.vector),
        "mse_chk": _mse(actions.chunk, t.chunk),
        "mse_trj": _mse(actions.trajectory, t.trajectory),
        "mse_vec_units": _mse(norm.denormalize(actions.vector), norm.denormalize(t.vector)),
        "mse_chk_units": _mse(norm.denormalize(actions.chunk), norm.denormalize(t.chunk)),
        "mse_trj_units": _mse(norm.denormalize(actions.trajectory), norm.denormalize(t.trajectory)),
    }
    return row | extra


@torch.no_grad()
def replay(
    sources: list[Source], ds: ShardDataset, stride: int, seed: int = 0
) -> list[dict[str, Any]]:
    """One row per (window, group): ``episode``, ``frame`` (its index in the replay),
    ``window`` (dataset index), ``group`` and :data:`METRICS`."""
    rows: list[dict[str, Any]] = []
    episodes = ds.episode_runs(stride)
    if not episodes:
        raise SigmaUserError(f"{ds.root}: the split has no episodes to replay")
    swap = swapped_windows(episodes)
    for source in sources:
        p = source.policy
        # every group is scored in absolute normalized units, whatever it predicts in
        space = ActionSpace(p.spec.data.actions, ds.meta["stats"], str(ds.root))
        for episode, windows in episodes.items():
            m = None
            for k, i in enumerate(windows):
                batch = collate([ds[i]])
                torch.manual_seed(seed + k)  # the same sampler noise for every group
                out = p(batch, m, telepathy=source.telepathy)
                seen = replace(batch, images=collate([ds[swap[i]]]).images)
                torch.manual_seed(seed + k)
                swapped = _groups(p, p(seen, m, telepathy=source.telepathy), source, space, batch)
                m = out.intent.m_t
                where = {"episode": episode, "frame": k, "window": i}
                for group, (actions, extra) in _groups(p, out, source, space, batch).items():
                    reliance = _mse(swapped[group][0].trajectory, actions.trajectory)
                    found = _metrics(actions, batch, ds, extra | {"image_reliance": reliance})
                    rows.append(where | {"group": group} | found)
    return rows


def swapped_windows(episodes: dict[int, list[int]]) -> dict[int, int]:
    """window -> the window whose images ``image_reliance`` puts in its place: the next
    episode's (in order, wrapping) at the same step, its last one if it is shorter; with
    a single episode, the same episode half its length later (wrapping)."""
    order = list(episodes)
    out = {}
    for e, windows in enumerate(episodes.values()):
        other = episodes[order[(e + 1) % len(order)]]
        shift = len(windows) // 2 if len(order) == 1 else 0
        for k, i in enumerate(windows):
            out[i] = other[min((k + shift) % len(windows), len(other) - 1)]
    return out


def _groups(
    p: SigmaPolicy, out: SigmaOutput, source: Source, space: ActionSpace, batch: SigmaBatch
) -> dict[str, tuple[ActionSet, dict[str, float]]]:
    """group -> (its actions in absolute normalized units, its pathway columns) for one
    forward's output on ``batch``."""
    groups = _policy_groups(p, out, source)
    return {
        g: (actions.map(lambda a: space.decode(a, batch.state)), extra)
        for g, (actions, extra) in groups.items()
    }


def _policy_groups(
    p: SigmaPolicy, out: SigmaOutput, source: Source
) -> dict[str, tuple[ActionSet, dict[str, float]]]:
    if not source.telepathy:
        return {source.name: (out.actions, NO_PATHWAY)}
    it = out.intent
    sem = F.cosine_similarity(it.z_pool, it.c_text + it.c_env, dim=-1).item()
    tel = {"tau_l2": out.tau.norm(dim=-1).item(), "sem_align": sem}
    adapted, diag = p.adapt(out)
    return {
        source.name: (adapted, tel | {"adapter_scale": diag.scale.item()}),
        f"{source.name}:no-adapter": (out.actions, tel | {"adapter_scale": 1.0}),
        f"{source.name}:base": (out.base, NO_PATHWAY),
    }
