"""What ``sigma preprocess`` reads: episodes of actions, states and camera frames.

A source (LeRobot dataset, simulator output, ...) implements :class:`EpisodeSource`;
preprocessing never needs to know where the episodes came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np


@dataclass
class Episode:
    """One episode, frames in time order.

    Attributes:
        index: the episode's id in its dataset.
        task: the task instruction.
        action: (N, A) float32 actions in dataset units.
        state: (N, S) float32 robot states in dataset units.
        frames: spec camera name -> (N, 3, P, P) uint8 images, already resized.
        environment_state: (N, E_env) float32 privileged scene state (LeRobot's
            ``observation.environment_state``: object poses in a simulator), or
            ``None`` when the source has none.
    """

    index: int
    task: str
    action: np.ndarray
    state: np.ndarray
    frames: dict[str, np.ndarray] = field(default_factory=dict)
    environment_state: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.action)
        columns = {"observation.state": self.state, **self.frames}
        if self.environment_state is not None:
            columns["observation.environment_state"] = self.environment_state
        for name, arr in columns.items():
            if len(arr) != n:
                raise ValueError(
                    f"episode {self.index}: {name} has {len(arr)} frames, action has {n}"
                )


@dataclass
class SourceInfo:
    """What preprocessing records about a source and checks against the spec.

    Attributes:
        kind: ``"lerobot"`` or ``"sigma-shards"``.
        dataset: the dataset id (hub repo id or local path).
        fps: frames per second.
        action_dim / state_dim: feature widths.
        environment_state_dim: width of ``observation.environment_state`` (0: none).
        cameras: spec camera name -> source key.
        fingerprint: identifies the exact source content (hashes, sizes) for resume.
        extra: anything else worth recording in ``meta.json`` (revision, robot type...).
    """

    kind: str
    dataset: str
    fps: float
    action_dim: int
    state_dim: int
    cameras: dict[str, str]
    fingerprint: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)
    environment_state_dim: int = 0


class EpisodeSource(Protocol):
    """A dataset of episodes that preprocessing can read one at a time."""

    info: SourceInfo

    def episode_lengths(self) -> dict[int, int]:
        """Episode id -> number of frames, in the order episodes are processed."""
        ...

    def read(self, index: int, image_size: int) -> Episode:
        """Load one episode with every camera resized to ``image_size`` square."""
        ...


class InMemorySource:
    """An :class:`EpisodeSource` over episodes already in memory (frames at final size)."""

    def __init__(self, episodes: list[Episode], info: SourceInfo) -> None:
        self.episodes = {ep.index: ep for ep in episodes}
        self.info = info

    def episode_lengths(self) -> dict[int, int]:
        return {i: len(ep.action) for i, ep in self.episodes.items()}

    def read(self, index: int, image_size: int) -> Episode:
        ep = self.episodes[index]
        for name, frames in ep.frames.items():
            if frames.shape[-2:] != (image_size, image_size):
                raise ValueError(f"episode {index}: {name} frames are {frames.shape[-2:]}")
        return ep
