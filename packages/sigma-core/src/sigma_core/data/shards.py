"""The shard format: frames stored once plus a window index, in safetensors.

One shard holds whole episodes (windows never span shards). Tensors::

    frames.<camera>     uint8   (Nf, 3, P, P)  every stored frame, once
    frame.state         float32 (Nf, S)        observation.state per frame
    frame.action        float32 (Nf, A)        action per frame
    frame.episode       int64   (Nf,)          episode id (frames of one episode are contiguous)
    frame.index         int64   (Nf,)          frame index within its episode
    frame.environment_state  float32 (Nf, E_env)  optional: privileged scene state
                                               (LeRobot's observation.environment_state)
    window.frame        int64   (Nw,)          row of each window's observation frame
    window.episode      int64   (Nw,)
    window.task         int64   (Nw,)          index into the shard's ``tasks`` metadata
    window.vector       float32 (Nw, A)
    window.chunk        float32 (Nw, H_c, A)
    window.trajectory   float32 (Nw, T, A)
    window.avg_action_l2, window.max_action_l2  float32 (Nw,)

Metadata: one key ``sigma`` holding JSON ``{"format", "tasks"}``. Targets are stored per
window (a few hundred bytes each) so that imported shards whose targets are not
slices of one action stream keep them exactly. Reading memory-maps the file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from sigma_core._fileio import atomic_path, sha256_file
from sigma_core.errors import SigmaUserError

SHARD_FORMAT = "sigma-shard/1"
#: The optional per-frame column of privileged scene state.
ENVIRONMENT_STATE_KEY = "frame.environment_state"
FRAME_KEYS = ("frame.state", "frame.action", "frame.episode", "frame.index")
WINDOW_KEYS = (
    "window.frame",
    "window.episode",
    "window.task",
    "window.vector",
    "window.chunk",
    "window.trajectory",
    "window.avg_action_l2",
    "window.max_action_l2",
)


def shard_columns(
    *,
    frames: Mapping[str, np.ndarray],
    state: np.ndarray,
    action: np.ndarray,
    episode: int,
    frame_index: np.ndarray,
    first_row: int,
    window_start: np.ndarray,
    task: int,
    trajectory: np.ndarray,
    chunk: np.ndarray,
    vector: np.ndarray,
    avg_action_l2: np.ndarray,
    max_action_l2: np.ndarray,
    environment_state: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """The shard columns (module docstring) that one run of frames of an episode adds.

    Args:
        frames: camera -> uint8 (n, 3, P, P); ``state`` (n, S), ``action`` (n, A).
        frame_index: (n,) index of each frame within its episode.
        first_row: the shard row of the first of these frames.
        window_start: (w,) frame (within these n) of each window's observation.
        task: index of the episode's task in the shard's ``tasks``.
        trajectory, chunk, vector: (w, T, A), (w, H_c, A), (w, A) window targets.
        avg_action_l2, max_action_l2: (w,) static-filter statistics.
        environment_state: optional (n, E_env) privileged scene state.
    """
    n, w = len(action), len(window_start)
    extra = {}
    if environment_state is not None:
        extra[ENVIRONMENT_STATE_KEY] = np.asarray(environment_state, np.float32)
    return extra | {
        **{f"frames.{c}": f for c, f in frames.items()},
        "frame.state": np.asarray(state, np.float32),
        "frame.action": np.asarray(action, np.float32),
        "frame.episode": np.full(n, episode, np.int64),
        "frame.index": np.asarray(frame_index, np.int64),
        "window.frame": first_row + np.asarray(window_start, np.int64),
        "window.episode": np.full(w, episode, np.int64),
        "window.task": np.full(w, task, np.int64),
        "window.vector": np.asarray(vector, np.float32),
        "window.chunk": np.asarray(chunk, np.float32),
        "window.trajectory": np.asarray(trajectory, np.float32),
        "window.avg_action_l2": np.asarray(avg_action_l2, np.float32),
        "window.max_action_l2": np.asarray(max_action_l2, np.float32),
    }


def concat_columns(parts: Sequence[Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Concatenate :func:`shard_columns` results into one shard's tensors (``{}`` if none)."""
    if not parts:
        return {}
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def shard_name(i: int) -> str:
    """File name of shard ``i``."""
    return f"shard_{i:05d}.safetensors"


def write_shard(path: Path, tensors: dict[str, np.ndarray], tasks: list[str]) -> None:
    """Write one shard atomically (temporary name, then rename)."""
    missing = [k for k in (*FRAME_KEYS, *WINDOW_KEYS) if k not in tensors]
    if missing:
        raise ValueError(f"shard lacks {missing}")
    data = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in tensors.items()}
    # One metadata key: safetensors stores metadata in a hash map whose order varies
    # between runs, and resumed output must be byte-identical.
    meta = {"sigma": json.dumps({"format": SHARD_FORMAT, "tasks": tasks}, sort_keys=True)}
    with atomic_path(path) as tmp:
        save_file(data, str(tmp), metadata=meta)


def verify_shard(path: Path, sha256: str | None, size: int | None) -> None:
    """Raise a clear error if ``path`` is missing, truncated or altered."""
    if not path.is_file():
        raise SigmaUserError(f"{path}: shard missing; run sigma preprocess again")
    if size is not None and path.stat().st_size != size:
        raise SigmaUserError(
            f"{path}: {path.stat().st_size} bytes, meta.json says {size} (truncated or "
            "altered); delete the directory and run sigma preprocess again"
        )
    if sha256 is not None and sha256_file(path) != sha256:
        raise SigmaUserError(
            f"{path}: checksum mismatch with meta.json (corrupted or tampered); delete the "
            "directory and run sigma preprocess again"
        )


class Shard:
    """A memory-mapped shard: tensors keyed as in the module docstring."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            with safe_open(str(self.path), framework="pt") as f:
                meta = json.loads((f.metadata() or {}).get("sigma", "{}"))
                # get_tensor returns views on the memory-mapped file: no copy, no read.
                self.tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
        except Exception as e:
            raise SigmaUserError(f"{self.path}: not a readable shard ({e})") from None
        if meta.get("format") != SHARD_FORMAT:
            raise SigmaUserError(f"{self.path}: format {meta.get('format')!r}, not {SHARD_FORMAT}")
        self.tasks: list[str] = meta["tasks"]

    def __getitem__(self, key: str) -> torch.Tensor:
        return self.tensors[key]

    @property
    def num_windows(self) -> int:
        return len(self.tensors["window.frame"])

    def cameras(self) -> list[str]:
        return [k.removeprefix("frames.") for k in self.tensors if k.startswith("frames.")]


def file_record(path: Path) -> dict[str, object]:
    """{file, bytes, sha256} of a written shard, as listed in meta.json."""
    return {"file": path.name, "bytes": os.path.getsize(path), "sha256": sha256_file(path)}
