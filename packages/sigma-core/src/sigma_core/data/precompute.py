"""Compute base actions for every window of a shard directory (see :mod:`.base_actions`)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from sigma_core._fileio import atomic_path, atomic_write_text
from sigma_core.data.base_actions import DIRECTORY, FORMAT, PROGRESS, RECORD, SCALES
from sigma_core.data.loader import ShardDataset, collate
from sigma_core.data.shards import file_record, verify_shard
from sigma_core.errors import SigmaUserError
from sigma_core.types import ActionSet, SigmaBatch


def precompute_base_actions(
    root: str | Path,
    base: Callable[[SigmaBatch], ActionSet | None],
    base_policy: Mapping[str, Any],
    sources: Mapping[str, Any],
    *,
    frame_history: int = 1,
    batch_size: int = 8,
    device: torch.device | str = "cpu",
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Compute ``base(batch)`` for every window of the shards at ``root``; the record.

    ``base`` maps normalised batches (as training sees them) to normalised
    actions; they are stored in dataset units (``action_norm.denormalize``) so
    the loader normalises them exactly like the targets. ``base_policy`` (the
    spec entry) and ``sources`` (its pretrained weights' records) identify what
    computed them. ``progress`` is called with the windows done.
    """
    root = Path(root)
    data = ShardDataset(root, split="all", frame_history=frame_history)
    entry = dict(base_policy)
    done = _resume_state(root, entry, overwrite)
    files: dict[str, Any] = done["files"]
    (root / DIRECTORY).mkdir(exist_ok=True)
    start = 0
    for rec in data.meta["shards"]:
        name, count = rec["file"], rec["windows"]
        indices = range(start, start + count)
        start += count
        out = root / DIRECTORY / name
        if name in files and _intact(out, files[name]):
            if progress:
                progress(count)
            continue
        columns: dict[str, list[torch.Tensor]] = {s: [] for s in SCALES}
        for lo in range(0, count, batch_size):
            batch = collate([data[i] for i in indices[lo : lo + batch_size]]).to(device)
            with torch.no_grad():
                actions = base(batch)
            if actions is None:
                raise SigmaUserError(
                    f"base_policy {entry.get('type')!r} returns no actions (the internal "
                    "tau = 0 path): there is nothing to precompute"
                )
            for s in SCALES:
                columns[s].append(data.action_norm.denormalize(getattr(actions, s).float().cpu()))
            if progress:
                progress(len(batch.texts))
        tensors = {f"base.{s}": torch.cat(columns[s]).contiguous() for s in SCALES}
        with atomic_path(out) as tmp:
            save_file(tensors, str(tmp))
        files[name] = file_record(out) | {"file": f"{DIRECTORY}/{name}"}
        atomic_write_text(root / DIRECTORY / PROGRESS, json.dumps(done, indent=1))
    record = {"format": FORMAT, "base_policy": entry, "sources": dict(sources), "files": files}
    atomic_write_text(root / RECORD, json.dumps(record, indent=1, sort_keys=True) + "\n")
    (root / DIRECTORY / PROGRESS).unlink(missing_ok=True)
    return record


def _resume_state(root: Path, entry: dict[str, Any], overwrite: bool) -> dict[str, Any]:
    for path in (root / RECORD, root / DIRECTORY / PROGRESS):
        if not path.is_file():
            continue
        prev = json.loads(path.read_text())
        if prev["base_policy"] == entry:
            return {"base_policy": entry, "files": prev["files"]}
        if not overwrite:
            raise SigmaUserError(
                f"{root} holds base actions of another base policy ({prev['base_policy']}); "
                "use another shard directory or --overwrite-base-actions"
            )
    if overwrite:
        (root / RECORD).unlink(missing_ok=True)
        shutil.rmtree(root / DIRECTORY, ignore_errors=True)
    return {"base_policy": entry, "files": {}}


def _intact(path: Path, rec: Mapping[str, Any]) -> bool:
    try:
        verify_shard(path, rec["sha256"], rec["bytes"])
    except SigmaUserError:
        return False
    return True
