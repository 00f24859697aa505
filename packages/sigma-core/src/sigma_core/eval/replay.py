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

Batches and devices: the replay runs ``episodes_per_batch`` episodes side by side
(episodes with the same instruction together), step ``k`` of each in one forward
(and one more for the swapped images). An episode that has no window ``k`` is
left out of that step's batch and its memory row is kept as it was; the others'
memory rows are read and written in place, so each episode carries its own
``m_t`` whatever the lengths. Windows of different instructions never share a
forward: the backbone reads ``[text; vision; state]`` and the padding of a
shorter text moves the tokens after it, so a mixed batch would not give what
each episode gives alone. The sampler noise is seeded per step ``k`` and drawn
batch-invariantly (:func:`sigma_core.model.noise.batch_invariant_noise`): every
row sees the noise it would in a batch of one, and the metrics equal those of a
one-episode replay up to float rounding (a base that samples its own noise per
row, e.g. a LeRobot diffusion base, is the exception: ``episodes_per_batch=1``
reproduces it). A :class:`Source` builds its model only inside
:meth:`Source.loaded` (onto the evaluation's device) and frees it on exit, so
an evaluation of several large policies holds one at a time.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from sigma_core.data import ActionSpace, ShardDataset, collate
from sigma_core.errors import SigmaUserError
from sigma_core.model.checkpoint import META, check_versions, pin_providers, read_meta
from sigma_core.model.noise import batch_invariant_noise
from sigma_core.model.policy import SigmaPolicy
from sigma_core.plugins.registry import get_registry
from sigma_core.spec import SigmaSpec, validate_spec
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
NO_PATHWAY = ("tau_l2", "sem_align", "adapter_scale")
#: episodes replayed side by side in one forward by default
EPISODES_PER_BATCH = 8


@dataclass
class Source:
    """One argument of ``sigma eval``: a saved policy, its resolved spec and its groups.

    The spec comes from ``sigma.json`` without building anything; the model
    (:attr:`policy`) exists only inside :meth:`loaded`.
    """

    name: str
    directory: Path
    spec: SigmaSpec
    policy: SigmaPolicy | None = None

    @property
    def telepathy(self) -> bool:
        """Whether the policy was trained in stage sigma (so it has a telepathy pathway)."""
        return self.spec.train.stage == "sigma"

    @property
    def groups(self) -> list[str]:
        """The groups this source yields (see the module docstring)."""
        if self.telepathy:
            return [self.name, f"{self.name}:no-adapter", f"{self.name}:base"]
        return [self.name]

    @contextmanager
    def loaded(self, device: torch.device | str = "cpu") -> Iterator[None]:
        """Build :attr:`policy` from the checkpoint onto ``device`` (eval mode); free it on exit.

        Use ``source.policy`` inside and keep no reference to it beyond the block:
        on exit the model is dropped, garbage-collected and, on CUDA, its cached
        blocks are returned, so that the next source loads into the freed memory.
        Nested use keeps the model loaded by the outer block.
        """
        if self.policy is not None:
            yield
            return
        self.policy = SigmaPolicy.from_pretrained(self.directory).eval().to(device)
        try:
            yield
        finally:
            self.policy = None
            gc.collect()
            if torch.device(device).type == "cuda":
                torch.cuda.empty_cache()


def open_source(path: str | Path, name: str | None = None) -> Source:
    """A run directory (its ``policy/``) or a saved policy directory, its spec read, unbuilt.

    The spec is validated with every slot pinned to its recorded provider and the
    installed component versions are checked, so a policy that cannot be loaded
    fails here, before any other is evaluated.

    Raises:
        SigmaUserError: neither holds a saved policy (names the file that is missing),
            a recorded component provider is not installed, or one is installed at
            another version.
    """
    path = Path(path)
    directory = path / "policy" if (path / "policy" / META).is_file() else path
    if not (directory / META).is_file():
        hint = " (a run that has not finished: no policy/ yet)" if (path / "last").exists() else ""
        raise SigmaUserError(f"{path}: no saved policy ({META} missing){hint}")
    registry, meta = get_registry(), read_meta(directory)
    pinned = pin_providers(meta, registry, str(directory))
    check_versions(meta, registry, str(directory))  # as the load will, before any compute
    spec = validate_spec(pinned, registry, source=f"{directory}/{META}")
    return Source(name or (path.name if directory != path else directory.name), directory, spec)


def _mse(a: Tensor, b: Tensor) -> Tensor:
    """Per-row ``mean((a − b)²)``: (B,)."""
    return (a - b).pow(2).flatten(1).mean(1)


def _metrics(
    actions: ActionSet, batch: SigmaBatch, ds: ShardDataset, extra: dict[str, Tensor]
) -> dict[str, Tensor]:
    """Per-row metric columns (each (B,)) of ``actions`` against ``batch.targets``."""
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


def replay(
    sources: list[Source],
    ds: ShardDataset,
    stride: int,
    seed: int = 0,
    *,
    device: torch.device | str = "cpu",
    episodes_per_batch: int = EPISODES_PER_BATCH,
) -> list[dict[str, Any]]:
    """One row per (window, group), every source loaded in turn onto ``device``: ``episode``,
    ``frame`` (its index in the replay), ``window`` (dataset index), ``group`` and
    :data:`METRICS`; in source, episode, frame, group order."""
    rows: list[dict[str, Any]] = []
    for source in sources:
        with source.loaded(device):
            rows += replay_source(source, ds, stride, seed, episodes_per_batch=episodes_per_batch)
    return rows


@torch.no_grad()
def replay_source(
    source: Source,
    ds: ShardDataset,
    stride: int,
    seed: int = 0,
    *,
    episodes_per_batch: int = EPISODES_PER_BATCH,
) -> list[dict[str, Any]]:
    """:func:`replay` of one source that is :meth:`~Source.loaded`, on its policy's device.

    Raises:
        SigmaUserError: the split has no episodes, or ``episodes_per_batch`` < 1.
    """
    p = source.policy
    if p is None:
        raise ValueError(f"{source.name}: replay_source needs the source loaded (Source.loaded)")
    if episodes_per_batch < 1:
        raise SigmaUserError(f"episodes per batch must be >= 1, got {episodes_per_batch}")
    episodes = ds.episode_runs(stride)
    if not episodes:
        raise SigmaUserError(f"{ds.root}: the split has no episodes to replay")
    swap = swapped_windows(episodes)
    # every group is scored in absolute normalized units, whatever it predicts in
    space = ActionSpace(p.spec.data.actions, ds.meta["stats"], str(ds.root))
    device = next(p.parameters()).device
    order = list(episodes.items())
    # episodes with one instruction side by side: a batch of mixed instructions pads the
    # shorter ones, and the padding moves the tokens after the text in the backbone
    first_text = {episode: ds[windows[0]]["text"] for episode, windows in order}
    ranked = sorted(order, key=lambda item: first_text[item[0]])  # stable: episode order
    found: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for start in range(0, len(ranked), episodes_per_batch):
        chunk = ranked[start : start + episodes_per_batch]
        m: Tensor | None = None  # row j carries the m_t of the chunk's episode j
        for k in range(max(len(runs) for _, runs in chunk)):
            # the episodes that still have a window k; the others' memory rows stay put
            items = {j: ds[runs[k]] for j, (_, runs) in enumerate(chunk) if k < len(runs)}
            same_text: dict[str, list[int]] = {}
            for j, item in items.items():  # a text that changes within episodes splits
                same_text.setdefault(item["text"], []).append(j)
            for rows_of in same_text.values():
                index = [chunk[j][1][k] for j in rows_of]
                batch = collate([items[j] for j in rows_of]).to(device)
                seen = collate([ds[swap[i]] for i in index]).images.to(device)
                m_prev = None if m is None or k == 0 else m[rows_of]
                m_t, rows = _step(source, space, ds, batch, seen, m_prev, seed + k)
                if m is None:
                    m = m_t.new_zeros((len(chunk), *m_t.shape[1:]))
                m[rows_of] = m_t
                for j, i, per_group in zip(rows_of, index, rows, strict=True):
                    where = {"episode": chunk[j][0], "frame": k, "window": i}
                    found[(chunk[j][0], k)] = [where | row for row in per_group]
    return [row for episode, runs in order for k in range(len(runs)) for row in found[(episode, k)]]


def _step(
    source: Source,
    space: ActionSpace,
    ds: ShardDataset,
    batch: SigmaBatch,
    seen: Tensor,
    m_prev: Tensor | None,
    seed: int,
) -> tuple[Tensor, list[list[dict[str, Any]]]]:
    """One replanning step of n episodes: ``(m_t (n, ...), per episode its rows per group)``.

    Two forwards under the same ``seed`` and memory: the windows, and the windows
    with the images ``seen`` (``image_reliance``'s swap; its ``m_t`` is dropped).
    Each draws its sampler noise batch-invariantly (every row as in a batch of
    one, for every group and episode alike).
    """
    p = source.policy
    assert p is not None
    outs = []
    for images in (batch.images, seen):
        torch.manual_seed(seed)
        with batch_invariant_noise():
            outs.append(p(replace(batch, images=images), m_prev, telepathy=source.telepathy))
    out, out_seen = outs
    swapped = _groups(p, out_seen, source, space, batch)
    columns: dict[str, dict[str, Tensor]] = {}
    for group, (actions, extra) in _groups(p, out, source, space, batch).items():
        reliance = _mse(swapped[group][0].trajectory, actions.trajectory)
        columns[group] = _metrics(actions, batch, ds, extra | {"image_reliance": reliance})
    # one transfer per group and metric, not one per value
    values = {g: {k: v.float().cpu().tolist() for k, v in c.items()} for g, c in columns.items()}
    rows = [
        [{"group": g} | {k: v[r] for k, v in c.items()} for g, c in values.items()]
        for r in range(batch.batch_size)
    ]
    return out.intent.m_t, rows


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
) -> dict[str, tuple[ActionSet, dict[str, Tensor]]]:
    """group -> (its actions in absolute normalized units, its per-row pathway columns) for
    one forward's output on ``batch``."""
    groups = _policy_groups(p, out, source)
    return {
        g: (actions.map(lambda a: space.decode(a, batch.state)), extra)
        for g, (actions, extra) in groups.items()
    }


def _policy_groups(
    p: SigmaPolicy, out: SigmaOutput, source: Source
) -> dict[str, tuple[ActionSet, dict[str, Tensor]]]:
    zeros = out.tau.new_zeros(out.tau.shape[0])
    none = dict.fromkeys(NO_PATHWAY, zeros)
    if not source.telepathy:
        return {source.name: (out.actions, none)}
    it = out.intent
    sem = F.cosine_similarity(it.z_pool, it.c_text + it.c_env, dim=-1)
    tel = {"tau_l2": out.tau.norm(dim=-1), "sem_align": sem}
    adapted, diag = p.adapt(out)
    return {
        source.name: (adapted, tel | {"adapter_scale": diag.scale.reshape(-1)}),
        f"{source.name}:no-adapter": (out.actions, tel | {"adapter_scale": zeros + 1.0}),
        f"{source.name}:base": (out.base, none),
    }
