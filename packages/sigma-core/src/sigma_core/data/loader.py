"""Training data: a torch Dataset over shards that yields :class:`SigmaBatch` batches."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from sigma_core.data.actions import ActionMode, ActionSpace
from sigma_core.data.base_actions import load_base_actions, read_record
from sigma_core.data.prepare import read_meta
from sigma_core.data.shards import ENVIRONMENT_STATE_KEY, Shard, verify_shard
from sigma_core.data.stats import Normalizer
from sigma_core.errors import SigmaUserError
from sigma_core.types import ActionSet, SigmaBatch

SPLITS = ("train", "val", "test", "all")
#: LeRobot's key (and meta.json's statistics key) for privileged simulator state.
ENVIRONMENT_STATE = "observation.environment_state"


class ShardDataset(Dataset):
    """Windows of one split of a preprocessed directory.

    Each item is a dict: ``images`` uint8 (C, F, 3, P, P) with the F most recent
    frames (the first frame repeated at an episode start), ``state`` (S,),
    ``text``, and ``vector`` (A,), ``chunk`` (H_c, A), ``trajectory`` (T, A).
    State and actions are normalized ``(x − mean) / std`` with the train-split
    statistics of meta.json when ``normalize`` (the :attr:`action_norm` /
    :attr:`state_norm` normalizers invert it). Shards are memory-mapped lazily in
    each worker process.

    Args:
        root: the output directory of ``sigma preprocess``.
        split: ``train``, ``val``, ``test`` or ``all``.
        frame_history: frames per camera F.
        cameras: spec camera names to return, in order (default: all, in meta.json order).
        verify: check every shard's SHA-256 against meta.json first.
        base_actions: also return the precomputed base actions of ``sigma preprocess
            --base-policy`` (items gain ``base_vector``, ``base_chunk``,
            ``base_trajectory``, normalized like the targets; batches ``base_actions``).
        environment_state: when > 0, also return the privileged scene state of each
            window's observation frame (``observation.environment_state``, which must
            have this width; normalized with a std floor of :data:`ENVIRONMENT_STATE_EPS`;
            batches ``environment_state``). Specs that read it pass
            ``model.dims.environment_state_dim``; 0 (default) does not read it.
        actions: the representation of the targets (and base actions) when
            ``normalize``: ``absolute`` or ``relative`` to the window's state
            (:mod:`sigma_core.data.actions`; :attr:`action_space` converts back).
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        frame_history: int = 1,
        cameras: list[str] | None = None,
        normalize: bool = True,
        verify: bool = True,
        base_actions: bool = False,
        environment_state: int = 0,
        actions: ActionMode = "absolute",
    ) -> None:
        self.root = Path(root)
        self.meta = meta = read_meta(self.root)
        if split not in SPLITS:
            raise SigmaUserError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
        have = meta["options"]["cameras"]
        self.cameras = cameras or have
        missing = [c for c in self.cameras if c not in have]
        if missing:
            raise SigmaUserError(f"{self.root}: no camera {missing} (shards have {have})")
        if frame_history < 1:
            raise SigmaUserError(f"frame_history must be >= 1, got {frame_history}")
        self.frame_history = frame_history
        self.normalize = normalize
        self.action_norm = Normalizer(meta["stats"]["action"])
        self.state_norm = Normalizer(meta["stats"]["observation.state"])
        self.action_space = ActionSpace(actions, meta["stats"], str(self.root))
        self.environment_norm: Normalizer | None = None
        if environment_state:
            self.environment_norm = environment_normalizer(meta, self.root, environment_state)
        for rec in meta["shards"]:
            verify_shard(self.root / rec["file"], rec["sha256"] if verify else None, rec["bytes"])
        episodes = None if split == "all" else meta["split"][split]["episodes"]
        index: list[tuple[int, int]] = []
        for s, rec in enumerate(meta["shards"]):
            eps = Shard(self.root / rec["file"])["window.episode"].numpy()
            keep = (
                np.arange(len(eps))
                if episodes is None
                else np.flatnonzero(np.isin(eps, list(episodes)))
            )
            index += [(s, int(w)) for w in keep]
        self.index = index
        self.base_actions: list[dict[str, torch.Tensor]] | None = None
        if base_actions:
            record = read_record(self.root)
            if record is None:
                raise SigmaUserError(
                    f"{self.root}: no base actions; run sigma preprocess --base-policy SPEC"
                )
            self.base_actions = load_base_actions(self.root, record, meta["shards"], verify)
        self._shards: list[Shard] | None = None
        self._first_row: list[np.ndarray] = []
        self._pid = -1

    def __len__(self) -> int:
        return len(self.index)

    def window_frames(self) -> list[tuple[int, int]]:
        """(episode, frame index within the episode) of each window's observation."""
        out = []
        shards = self._open()
        for s, w in self.index:
            row = int(shards[s]["window.frame"][w])
            out.append((int(shards[s]["window.episode"][w]), int(shards[s]["frame.index"][row])))
        return out

    def episode_runs(self, stride: int) -> dict[int, list[int]]:
        """episode -> its windows at its first frame, then every ``stride`` frames while they
        exist: what a policy replanning every ``stride`` steps sees over the episode."""
        by_episode: dict[int, dict[int, int]] = {}
        for i, (episode, frame) in enumerate(self.window_frames()):
            by_episode.setdefault(episode, {})[frame] = i
        out: dict[int, list[int]] = {}
        for episode, at in sorted(by_episode.items()):
            frame, out[episode] = min(at), []
            while frame in at:
                out[episode].append(at[frame])
                frame += stride
        return out

    def runs(self, length: int, stride: int) -> list[tuple[int, ...]]:
        """Runs of ``length`` windows of one episode, ``stride`` frames apart, in index order.

        Run ``r`` starts at window ``i`` and continues with the windows whose
        observations are ``stride``, ``2·stride`` ... frames later in the same
        episode; a run is kept only when all of them exist (windows dropped as
        static or cut at the episode end break it). ``length=1`` gives every
        window on its own, in order, so a sampler over runs is one over windows.
        """
        if length < 1 or stride < 1:
            raise SigmaUserError(f"run length and stride must be >= 1, got {length}, {stride}")
        if length == 1:
            return [(i,) for i in range(len(self.index))]
        at = {key: i for i, key in enumerate(self.window_frames())}
        out = []
        for episode, frame in at:
            run = [at.get((episode, frame + k * stride)) for k in range(length)]
            if None not in run:
                out.append(tuple(run))  # type: ignore[arg-type]
        return sorted(out)

    def _open(self) -> list[Shard]:
        # One set of memory maps per process: DataLoader workers reopen after fork.
        if self._shards is None or self._pid != os.getpid():
            self._shards = [Shard(self.root / r["file"]) for r in self.meta["shards"]]
            self._first_row = [_episode_first_row(s["frame.episode"].numpy()) for s in self._shards]
            self._pid = os.getpid()
        return self._shards

    def __getitem__(self, i: int) -> dict[str, Any]:
        s, w = self.index[i]
        shard = self._open()[s]
        row = int(shard["window.frame"][w])
        first = int(self._first_row[s][row])
        rows = torch.tensor([max(row - k, first) for k in range(self.frame_history - 1, -1, -1)])
        images = torch.stack([shard[f"frames.{c}"][rows] for c in self.cameras])
        item = {
            "images": images,
            "state": shard["frame.state"][row].clone(),
            "text": shard.tasks[int(shard["window.task"][w])],
            "vector": shard["window.vector"][w].clone(),
            "chunk": shard["window.chunk"][w].clone(),
            "trajectory": shard["window.trajectory"][w].clone(),
            "episode": int(shard["window.episode"][w]),
        }
        if self.environment_norm is not None:
            item["environment_state"] = shard[ENVIRONMENT_STATE_KEY][row].clone()
        scales = ["vector", "chunk", "trajectory"]
        if self.base_actions is not None:
            for k in list(scales):
                item[f"base_{k}"] = self.base_actions[s][k][w].clone()
                scales.append(f"base_{k}")
        if self.normalize:
            item["state"] = self.state_norm.normalize(item["state"])
            if self.environment_norm is not None:
                item["environment_state"] = self.environment_norm.normalize(
                    item["environment_state"]
                )
            for k in scales:
                item[k] = self.action_space.encode(
                    self.action_norm.normalize(item[k]), item["state"]
                )
        return item


#: Privileged scene state is in metres: its std is floored at 1 mm, so that a column
#: that is constant in training (a goal's height) stays 0 instead of amplifying noise.
ENVIRONMENT_STATE_EPS = 1e-3


def environment_normalizer(meta: dict[str, Any], source: str | Path, width: int) -> Normalizer:
    """The normalizer of ``observation.environment_state`` from a shard directory's meta.

    Raises:
        SigmaUserError: the shards carry no environment state, or not ``width`` values.
    """
    stats = meta["stats"].get(ENVIRONMENT_STATE)
    if stats is None:
        raise SigmaUserError(
            f"{source}: the shards have no {ENVIRONMENT_STATE} (the spec's "
            "model.dims.environment_state_dim asks for it); record the data with this "
            "version of sigma data sim and run sigma preprocess again"
        )
    if len(stats["mean"]) != width:
        raise SigmaUserError(
            f"{source}: {ENVIRONMENT_STATE} has {len(stats['mean'])} values, the spec's "
            f"model.dims.environment_state_dim is {width}"
        )
    return Normalizer(stats, eps=ENVIRONMENT_STATE_EPS)


def _episode_first_row(episode: np.ndarray) -> np.ndarray:
    """For each frame row, the row where its episode starts (episodes are contiguous)."""
    starts = np.r_[0, np.flatnonzero(np.diff(episode)) + 1]
    lengths = np.diff(np.r_[starts, len(episode)])
    return np.repeat(starts, lengths)


def collate(items: list[dict[str, Any]]) -> SigmaBatch:
    """Stack items into a :class:`SigmaBatch` (images become float in [0, 1])."""

    def stack(key: str) -> ActionSet:
        return ActionSet(
            *(
                torch.stack([it[f"{key}{s}"] for it in items])
                for s in ("vector", "chunk", "trajectory")
            )
        )

    return SigmaBatch(
        images=torch.stack([it["images"] for it in items]).float().div_(255),
        state=torch.stack([it["state"] for it in items]),
        texts=[it["text"] for it in items],
        targets=stack(""),
        base_actions=stack("base_") if "base_vector" in items[0] else None,
        environment_state=torch.stack([it["environment_state"] for it in items])
        if "environment_state" in items[0]
        else None,
    )


class RunDataset(Dataset):
    """Items are runs of windows (see :meth:`ShardDataset.runs`): a list of K window items."""

    def __init__(self, windows: ShardDataset, runs: Sequence[tuple[int, ...]]) -> None:
        self.windows, self.run_index = windows, list(runs)
        self.root = windows.root

    def __len__(self) -> int:
        return len(self.run_index)

    def __getitem__(self, r: int) -> list[dict[str, Any]]:
        return [self.windows[i] for i in self.run_index[r]]


def collate_runs(runs: list[list[dict[str, Any]]]) -> list[SigmaBatch]:
    """Runs of K windows -> K batches, batch k holding window k of every run."""
    return [collate([run[k] for run in runs]) for k in range(len(runs[0]))]


class EpochSampler(Sampler[int]):
    """A seeded permutation per epoch, optionally starting part-way (for exact resume).

    Epoch ``e`` visits ``randperm(n)`` drawn from a generator seeded with
    ``seed + e``; ``start`` skips the first items (already consumed before a resume).
    """

    def __init__(self, n: int, seed: int = 0, epoch: int = 0, start: int = 0, shuffle: bool = True):
        self.n, self.seed, self.epoch, self.start, self.shuffle = n, seed, epoch, start, shuffle

    def order(self) -> list[int]:
        if not self.shuffle:
            return list(range(self.n))
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        return torch.randperm(self.n, generator=g).tolist()

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.order()[self.start :])

    def __len__(self) -> int:
        return self.n - self.start


def make_loader(
    dataset: ShardDataset | RunDataset,
    batch_size: int,
    *,
    seed: int = 0,
    epoch: int = 0,
    start: int = 0,
    shuffle: bool = True,
    num_workers: int = 0,
    drop_last: bool = False,
    batches: Sequence[Sequence[int]] | None = None,
) -> DataLoader:
    """A DataLoader with deterministic, seed-driven order.

    Over a :class:`ShardDataset` it yields :class:`SigmaBatch` batches; over a
    :class:`RunDataset`, lists of K batches (one per step of the runs).

    Args:
        batches: explicit item indices of every batch, in order (the trainer's
            per-process slices); replaces ``batch_size``, the sampler and ``drop_last``.
        num_workers: loader processes (``data.num_workers``); 0 loads in-process.
    """
    if len(dataset) == 0:
        raise SigmaUserError(f"{dataset.root}: the requested split has no windows")
    # A generator of its own: DataLoader draws its workers' base seed from it, never
    # from torch's global RNG, so starting a loader does not change the training noise
    # (exact resume depends on that).
    generator = torch.Generator().manual_seed(seed + epoch)
    collate_fn = collate_runs if isinstance(dataset, RunDataset) else collate
    if batches is not None:
        return DataLoader(
            dataset,
            batch_sampler=batches,
            num_workers=num_workers,
            collate_fn=collate_fn,
            generator=generator,
        )
    sampler = EpochSampler(len(dataset), seed, epoch, start, shuffle)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate_fn,
        drop_last=drop_last,
        generator=generator,
    )
