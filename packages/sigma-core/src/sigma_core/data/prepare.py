"""``sigma preprocess``: episodes in, windowed safetensors shards + meta.json out.

Output directory::

    shard_00000.safetensors ...  frames once + window index (see :mod:`.shards`)
    meta.json                    written last: its presence marks the output complete
    .progress.json               only while running: finished shards and their checksums

Resume: shards are planned from episode lengths alone and each is a pure function
of its episodes and the options, so a killed run restarted with the same
arguments skips the shards whose checksums match and rewrites the rest; the
result is byte-identical to an uninterrupted run. A rerun on complete output
(same parameters, checksums intact) is a no-op.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from sigma_core._fileio import atomic_write_text
from sigma_core.config import Dims
from sigma_core.data.actions import RELATIVE_STATS, relative_stats
from sigma_core.data.dims import check_dims
from sigma_core.data.episodes import EpisodeSource, SourceInfo
from sigma_core.data.shards import (
    ENVIRONMENT_STATE_KEY,
    Shard,
    concat_columns,
    file_record,
    shard_columns,
    shard_name,
    verify_shard,
    write_shard,
)
from sigma_core.data.stats import feature_stats, split_episodes
from sigma_core.data.windows import WindowRule, cut_windows
from sigma_core.errors import SigmaUserError

META = "meta.json"
PROGRESS = ".progress.json"
META_FORMAT = "sigma-shards/1"
#: (label, statistics): a trained policy's saved statistics to normalize with
Adopted = tuple[str, dict[str, Any]]
Progress = Callable[[int], None]


class PreprocessOptions(BaseModel):
    """Every hyper-parameter of a preprocessing run (all recorded in meta.json)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cameras: list[str] = Field(min_length=1, description="spec camera names, in order")
    image_size: int = Field(96, ge=8, description="stored image side P")
    horizon: int = Field(16, ge=1, description="window length T")
    chunk: int = Field(8, ge=1, description="chunk horizon H_c")
    stride: int = Field(1, ge=1)
    min_action_norm: float = Field(0.1, ge=0, description="static filter threshold")
    l2_of: Literal["delta", "action"] = "delta"
    val_fraction: float = Field(0.1, ge=0, lt=1)
    test_fraction: float = Field(0.1, ge=0, lt=1)
    split_seed: int = 0
    shard_frames: int = Field(2048, ge=1, description="frames per shard (whole episodes)")

    def rule(self) -> WindowRule:
        return WindowRule(self.horizon, self.chunk, self.stride, self.min_action_norm, self.l2_of)


def plan_shards(lengths: dict[int, int], shard_frames: int) -> list[list[int]]:
    """Group episodes in order into shards of about ``shard_frames`` frames."""
    groups: list[list[int]] = [[]]
    frames = 0
    for ep, n in lengths.items():
        if groups[-1] and frames + n > shard_frames:
            groups.append([])
            frames = 0
        groups[-1].append(ep)
        frames += n
    return [g for g in groups if g]


def _params(info: SourceInfo, opts: PreprocessOptions) -> dict[str, Any]:
    source = {"kind": info.kind, "dataset": info.dataset, "cameras": info.cameras}
    return {"options": opts.model_dump(), "source": source | {"fingerprint": info.fingerprint}}


def _diff(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[str]:
    keys = sorted(set(a) | set(b))
    out = []
    for k in keys:
        if isinstance(a.get(k), dict) and isinstance(b.get(k), dict):
            out += _diff(a[k], b[k], f"{prefix}{k}.")
        elif a.get(k) != b.get(k):
            out.append(f"{prefix}{k}")
    return out


def build_shard(
    source: EpisodeSource, episodes: list[int], opts: PreprocessOptions, progress: Progress | None
) -> tuple[dict[str, np.ndarray], list[str], dict[str, Any]]:
    """Read ``episodes``, cut windows and lay out one shard's tensors."""
    rule = opts.rule()
    parts: list[dict[str, np.ndarray]] = []
    tasks: list[str] = []
    counts: dict[str, Any] = {"candidates": 0, "dropped_nonfinite": 0, "dropped_static": 0}
    short: dict[str, int] = {}
    rows = 0
    for ep_id in episodes:
        ep = source.read(ep_id, opts.image_size)
        n = len(ep.action)
        win = cut_windows(ep, rule)
        for k in ("candidates", "dropped_nonfinite", "dropped_static"):
            counts[k] += getattr(win, k)
        if progress:
            progress(1)
        if n < rule.horizon:
            short[str(ep_id)] = n
        if len(win.start) == 0:
            continue  # no kept window: store none of its frames
        if ep.task not in tasks:
            tasks.append(ep.task)
        traj = ep.action[win.start[:, None] + np.arange(rule.horizon)]
        parts.append(
            shard_columns(
                frames={c: ep.frames[c] for c in opts.cameras},
                state=ep.state,
                action=ep.action,
                episode=ep_id,
                frame_index=np.arange(n),
                first_row=rows,
                window_start=win.start,
                task=tasks.index(ep.task),
                trajectory=traj,
                chunk=traj[:, : rule.chunk],
                vector=traj[:, 0],
                avg_action_l2=win.avg_action_l2,
                max_action_l2=win.max_action_l2,
                environment_state=ep.environment_state,
            )
        )
        rows += n
    counts["short_episodes"] = short
    return concat_columns(parts), tasks, counts


def _prepare_out(out: Path, params: dict[str, Any]) -> dict[str, Any] | None:
    """Check what is already in ``out``; return the progress record to resume from."""
    for name in (META, PROGRESS):
        path = out / name
        if path.is_file():
            prev = json.loads(path.read_text())
            changed = _diff(prev["params"], params)
            if changed:
                raise SigmaUserError(
                    f"{out} holds shards made with different parameters ({', '.join(changed)}); "
                    "use another --out or delete it"
                )
            return prev
    if out.exists() and any(out.iterdir()):
        raise SigmaUserError(
            f"{out} exists and is not a Sigma shard directory; choose another --out"
        )
    return None


def _versions(info: SourceInfo) -> dict[str, str]:
    names = ["sigma-vla-core", "numpy", "torch", "safetensors", *info.extra.get("packages", [])]
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def preprocess(
    source: EpisodeSource,
    out: str | Path,
    opts: PreprocessOptions,
    *,
    dims: Dims | None = None,
    progress: Progress | None = None,
    stats: Adopted | None = None,
) -> dict[str, Any]:
    """Turn ``source`` into shards under ``out``; return the meta.json content.

    ``stats``: ``(label, statistics)`` of a trained policy (its saved ``stats``) to
    normalize with instead of this data's own: shards for a stage that builds on a
    frozen base must present it the inputs it was trained on. Each statistic it
    holds replaces the computed one (same width, or an error naming the key); the
    others are computed; ``meta["stats_from"]`` records the label.

    Raises :class:`SigmaUserError` when the source's action or state width differs
    from ``dims`` (the spec's), on an output directory made with other parameters,
    and when no window survives.
    """
    info = source.info
    if dims is not None:
        have = {"action_dim": info.action_dim, "state_dim": info.state_dim}
        check_dims(dims, have, info.dataset)
    if stats is not None:  # refuse what can be refused before anything is written
        widths = {"action": info.action_dim, RELATIVE_STATS: info.action_dim}
        widths["observation.state"] = info.state_dim
        for key, width in widths.items():
            if key in stats[1] and len(stats[1][key]["mean"]) != width:
                raise SigmaUserError(
                    f"{stats[0]}: statistics {key!r} have width"
                    f" {len(stats[1][key]['mean'])}, this data's {width}"
                )
    groups = plan_shards(source.episode_lengths(), opts.shard_frames)
    return write_shards(
        out, info, opts, groups, lambda g: build_shard(source, g, opts, progress), progress, stats
    )


Build = Callable[[list[Any]], tuple[dict[str, np.ndarray], list[str], dict[str, Any]]]


def write_shards(
    out: str | Path,
    info: SourceInfo,
    opts: PreprocessOptions,
    groups: list[list[Any]],
    build: Build,
    progress: Progress | None = None,
    stats: Adopted | None = None,
) -> dict[str, Any]:
    """Write one shard per group with ``build(group)``, resumably; then meta.json
    (with ``stats`` adopted as :func:`preprocess` says).

    ``build`` returns (tensors, tasks, counts); ``counts`` holds ``candidates``,
    ``dropped_nonfinite``, ``dropped_static``, ``short_episodes`` and, where a group
    is not a list of episodes, ``episodes_in``.
    """
    out = Path(out)
    params = _params(info, opts)
    if stats is not None:  # other statistics make other shards: not resumed into these
        params["stats_from"] = {"label": stats[0], "sha256": _digest(stats[1])}
    prev = _prepare_out(out, params)
    if prev is not None and (out / META).is_file():
        for rec in prev["shards"]:
            verify_shard(out / rec["file"], rec["sha256"], rec["bytes"])
        return prev | {"up_to_date": True}

    done: dict[str, Any] = (prev or {}).get("groups", {})
    state = {"params": params, "groups": done}
    for i, group in enumerate(groups):
        rec = done.get(str(i))
        if (
            rec is not None
            and rec["episodes"] == group
            and (rec["file"] is None or _intact(out, rec))
        ):
            if progress:
                progress(len(group))
            continue
        tensors, tasks, counts = build(group)
        rec = {"episodes": group, "counts": counts, "tasks": tasks, "file": None}
        if tensors:
            path = out / shard_name(i)
            write_shard(path, tensors, tasks)
            rec |= file_record(path) | {"windows": len(tensors["window.frame"])}
        done[str(i)] = rec
        atomic_write_text(out / PROGRESS, json.dumps(state, indent=1, sort_keys=True))
    groups_done = [done[str(i)] for i in range(len(groups))]
    return _finish(out, info, opts, params, groups_done, stats)


def _intact(out: Path, rec: dict[str, Any]) -> bool:
    try:
        verify_shard(out / rec["file"], rec["sha256"], rec["bytes"])
    except SigmaUserError:
        return False
    return True


def _finish(
    out: Path,
    info: SourceInfo,
    opts: PreprocessOptions,
    params: dict[str, Any],
    groups: list[dict[str, Any]],
    adopted: Adopted | None = None,
) -> dict[str, Any]:
    """Split, statistics (``adopted`` replacing computed ones) and meta.json."""
    counts = {"candidates": 0, "dropped_nonfinite": 0, "dropped_static": 0}
    short: dict[str, int] = {}
    for g in groups:
        for k in counts:
            counts[k] += g["counts"][k]
        short |= g["counts"]["short_episodes"]
    shards = [g for g in groups if g["file"] is not None]
    kept = sum(g["windows"] for g in shards)
    # a group is a list of episodes, or (imported paper shards) a file whose build
    # counted the pseudo-episodes it found
    episodes_in = sum(g["counts"].get("episodes_in", len(g["episodes"])) for g in groups)
    if kept == 0:
        (out / PROGRESS).unlink(missing_ok=True)
        if not any(out.iterdir()):
            out.rmdir()
        raise SigmaUserError(
            f"{info.dataset}: no window left after filtering ({episodes_in} episodes, "
            f"{counts['candidates']} candidate windows: {counts['dropped_static']} static below "
            f"--min-action-norm {opts.min_action_norm}, "
            f"{counts['dropped_nonfinite']} with NaN/inf, "
            f"{len(short)} episodes shorter than T={opts.horizon}); nothing was written"
        )
    frames: dict[str, list[np.ndarray]] = {"action": [], "state": [], "episode": []}
    # each window's targets and observation state (the relative actions' statistics)
    windows: dict[str, list[np.ndarray]] = {"trajectory": [], "state": [], "episode": []}
    opened = [Shard(out / g["file"]) for g in shards]
    # privileged scene state: statistics only when every shard carries the column
    environment = all(ENVIRONMENT_STATE_KEY in shard.tensors for shard in opened)
    if environment:
        frames["environment_state"] = []
    windows_per_episode: dict[int, int] = {}
    tasks: list[str] = []
    for shard in opened:
        for k in frames:
            frames[k].append(shard[f"frame.{k}"].numpy())
        rows = shard["window.frame"].numpy()
        windows["trajectory"].append(shard["window.trajectory"].numpy())
        windows["state"].append(shard["frame.state"].numpy()[rows])
        windows["episode"].append(shard["window.episode"].numpy())
        eps, n = np.unique(shard["window.episode"].numpy(), return_counts=True)
        windows_per_episode |= dict(zip(eps.tolist(), n.tolist(), strict=True))
        tasks += [t for t in shard.tasks if t not in tasks]
    split = split_episodes(
        list(windows_per_episode), opts.val_fraction, opts.test_fraction, opts.split_seed
    )
    ep_of_frame = np.concatenate(frames["episode"])
    train = np.isin(ep_of_frame, split["train"])
    stats = {
        key: feature_stats(np.concatenate(frames[name])[train])
        for key, name in (
            ("action", "action"),
            ("observation.state", "state"),
            ("observation.environment_state", "environment_state"),
        )
        if name in frames
    }
    trajectory, window_state = (
        np.concatenate(windows["trajectory"]),
        np.concatenate(windows["state"]),
    )
    if window_state.shape[-1] >= trajectory.shape[-1]:  # a state entry per action entry
        train_windows = np.isin(np.concatenate(windows["episode"]), split["train"])
        stats[RELATIVE_STATS] = relative_stats(
            trajectory[train_windows], window_state[train_windows]
        )
    if adopted is not None:
        stats = _adopt(stats, *adopted)
    meta = {
        "format": META_FORMAT,
        "params": params,
        "source": {
            "kind": info.kind,
            "dataset": info.dataset,
            "fps": info.fps,
            "cameras": info.cameras,
            **info.extra.get("meta", {}),
        },
        "options": opts.model_dump(),
        "counts": counts
        | {
            "episodes_in": episodes_in,
            "episodes_kept": len(windows_per_episode),
            "frames_stored": len(ep_of_frame),
            "windows_kept": kept,
            "short_episodes": short,
        },
        "split": {
            name: {"episodes": eps, "windows": sum(windows_per_episode[e] for e in eps)}
            for name, eps in split.items()
        },
        "tasks": tasks,
        "stats": stats,
        **({} if adopted is None else {"stats_from": adopted[0]}),
        "shards": [
            {k: g[k] for k in ("file", "bytes", "sha256", "windows", "episodes")} for g in shards
        ],
        "versions": _versions(info),
    }
    atomic_write_text(out / META, json.dumps(meta, indent=1, sort_keys=True) + "\n")
    (out / PROGRESS).unlink(missing_ok=True)
    return meta


def _digest(value: Any) -> str:
    import hashlib

    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def _adopt(computed: dict[str, Any], label: str, given: dict[str, Any]) -> dict[str, Any]:
    """``computed`` with every statistic of ``given`` in its place (checked widths)."""
    out = dict(computed)
    for key, value in given.items():
        if key not in computed:
            continue  # e.g. a policy's scene-state statistics for data recorded without it
        have, want = len(computed[key]["mean"]), len(value["mean"])
        if have != want:
            raise SigmaUserError(
                f"{label}: statistics {key!r} have width {want}, this data's {have}"
            )
        out[key] = dict(value)
    return out


def read_meta(root: str | Path) -> dict[str, Any]:
    """meta.json of a complete shard directory, with clear errors otherwise."""
    root = Path(root)
    if not root.is_dir():
        raise SigmaUserError(f"{root}: no such shard directory")
    path = root / META
    if not path.is_file():
        hint = (
            "incomplete (preprocessing was interrupted); run the same sigma preprocess again"
            if (root / PROGRESS).is_file()
            else f"not a Sigma shard directory (no {META})"
        )
        raise SigmaUserError(f"{root}: {hint}")
    meta = json.loads(path.read_text())
    if meta.get("format") != META_FORMAT:
        raise SigmaUserError(f"{path}: format {meta.get('format')!r}, expected {META_FORMAT}")
    return meta


def remove_output(out: Path) -> None:
    """Delete a shard directory written by :func:`preprocess` (used by --overwrite)."""
    if (out / META).is_file() or (out / PROGRESS).is_file():
        shutil.rmtree(out)
    elif out.exists():
        raise SigmaUserError(f"{out} is not a Sigma shard directory; refusing to delete it")
