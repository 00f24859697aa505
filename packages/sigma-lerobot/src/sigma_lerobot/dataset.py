"""Read LeRobot v3 datasets (local root, or hub id when online) episode by episode.

Whole episodes are read in one go: numeric columns straight from the parquet
tables, each camera's frames decoded sequentially once (video) or decoded from
the stored images, then resized with padding to the spec's image size. This is
what makes preprocessing much faster than per-window ``__getitem__`` with
``delta_timestamps``, which decodes every frame up to T times.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sigma_core import SigmaUserError, is_internal_error
from sigma_core.data import Episode, SourceInfo, resize_with_pad
from sigma_lerobot.schema import ENVIRONMENT_STATE, RECORDING_FILE

ACTION, STATE = "action", "observation.state"
_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
_DECODE_CHUNK = 64  # frames decoded at once: bounds memory for 480x640 video


def recording(root: Path) -> dict[str, Any] | None:
    """``{"source", "config"}`` of the simulator that recorded ``root``, if one did.

    Copied into the shards' ``meta.json`` (``source.recording``) so that the closed
    loop evaluates in the scene the demonstrations came from (colours, spawn
    region, distractors) even after the dataset is gone.
    """
    path = root / RECORDING_FILE
    if not path.is_file():
        return None
    try:
        journal = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SigmaUserError(f"{path}: unreadable ({exc})") from exc
    if not isinstance(journal, dict) or not isinstance(journal.get("config"), dict):
        return None
    return {"source": journal.get("source"), "config": journal["config"]}


def parse_camera_map(items: list[str] | None) -> dict[str, str]:
    """``["up=observation.images.top", "side=wrist"]`` -> spec camera -> dataset key."""
    out = {}
    for item in items or []:
        for part in item.split(","):
            name, sep, key = part.partition("=")
            if not sep or not name.strip() or not key.strip():
                raise SigmaUserError(f"--camera-map expects NAME=KEY, got {part!r}")
            key = key.strip()
            out[name.strip()] = (
                key if key.startswith("observation.") else f"observation.images.{key}"
            )
    return out


def _video_backend() -> str:
    # torchcodec needs a system FFmpeg; without one LeRobot prints long tracebacks
    # before falling back to PyAV, so pick PyAV unless torchcodec actually loads.
    if importlib.util.find_spec("torchcodec") is not None:
        try:
            import torchcodec.decoders  # noqa: F401
        except Exception:
            return "pyav"
        return "torchcodec"
    return "pyav"


def _fingerprint(root: Path) -> dict[str, Any]:
    """Hash of meta/ plus the size of every data/video file: changes when the dataset does."""
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if rel.startswith(".cache") or "/." in f"/{rel}":
            continue
        h.update(rel.encode())
        h.update(
            path.read_bytes() if rel.startswith("meta/") else str(path.stat().st_size).encode()
        )
    return {"sha256": h.hexdigest()}


class LeRobotSource:
    """An :class:`~sigma_core.data.episodes.EpisodeSource` over a LeRobot v3 dataset.

    Args:
        dataset: a local dataset root, or a hub repo id (needs network).
        cameras: spec camera names, in order.
        camera_map: spec camera -> dataset key; default ``observation.images.<name>``.
        revision: hub revision (branch, tag or commit).
        video_backend: ``pyav`` or ``torchcodec`` (default: torchcodec if it loads).
    """

    def __init__(
        self,
        dataset: str,
        cameras: list[str],
        camera_map: dict[str, str] | None = None,
        revision: str | None = None,
        video_backend: str | None = None,
    ) -> None:
        self.dataset = dataset
        self.cameras = cameras
        self.backend = video_backend or _video_backend()
        self.ds = self._open(dataset, revision, self.backend)
        meta = self.ds.meta
        self.root = Path(self.ds.root)
        version = str(meta.info.get("codebase_version", "?"))
        if not version.startswith("v3"):
            raise SigmaUserError(
                f"{dataset}: LeRobot dataset format {version}; sigma reads v3.x (convert it "
                "with lerobot's convert_dataset_v21_to_v30 script)"
            )
        features = meta.features
        camera_map = camera_map or {}
        unknown = sorted(set(camera_map) - set(cameras))
        if unknown:
            raise SigmaUserError(f"--camera-map names {unknown}, not spec cameras {cameras}")
        keys = {c: camera_map.get(c, f"observation.images.{c}") for c in cameras}
        for key in (ACTION, STATE, *keys.values()):
            if key not in features:
                have = ", ".join(sorted(features))
                hint = " (map it with --camera-map NAME=KEY)" if key in keys.values() else ""
                raise SigmaUserError(f"{dataset}: no feature {key!r}{hint}; it has: {have}")
        for key in keys.values():
            if key not in meta.camera_keys:
                raise SigmaUserError(f"{dataset}: feature {key!r} is not a camera")
        self.keys = keys
        eps = meta.episodes
        self._ranges = {
            int(e): (int(a), int(b))
            for e, a, b in zip(
                eps["episode_index"],
                eps["dataset_from_index"],
                eps["dataset_to_index"],
                strict=True,
            )
        }
        self._from_ts = {
            key: dict(zip(eps["episode_index"], eps[f"videos/{key}/from_timestamp"], strict=True))
            for key in keys.values()
            if key in meta.video_keys
        }
        self.info = SourceInfo(
            kind="lerobot",
            dataset=dataset,
            fps=float(meta.fps),
            action_dim=int(features[ACTION]["shape"][0]),
            state_dim=int(features[STATE]["shape"][0]),
            cameras=keys,
            fingerprint=_fingerprint(self.root),
            environment_state_dim=int(features[ENVIRONMENT_STATE]["shape"][0])
            if ENVIRONMENT_STATE in features
            else 0,
            extra={
                "packages": ["lerobot"],
                "meta": {
                    "revision": revision or meta.info.get("revision"),
                    "codebase_version": version,
                    "robot_type": meta.robot_type,
                    "root": str(self.root),
                    "total_episodes": meta.total_episodes,
                    "total_frames": meta.total_frames,
                    "action_names": features[ACTION].get("names"),
                    "state_names": features[STATE].get("names"),
                    "environment_state_names": features.get(ENVIRONMENT_STATE, {}).get("names"),
                    "recording": recording(self.root),
                },
            },
        )
        columns = [ACTION, STATE, "timestamp", "task_index"]
        if ENVIRONMENT_STATE in features:
            columns.append(ENVIRONMENT_STATE)
        columns += [k for k in keys.values() if k not in meta.video_keys]
        self._table = self.ds.hf_dataset.with_format("numpy", columns=columns)

    @staticmethod
    def _open(dataset: str, revision: str | None, backend: str):  # type: ignore[no-untyped-def]
        from lerobot.datasets.lerobot_dataset import LeRobotDataset

        path = Path(dataset).expanduser()
        if path.exists():
            if not (path / "meta" / "info.json").is_file():
                raise SigmaUserError(f"{path}: not a LeRobot dataset (no meta/info.json)")
            info = json.loads((path / "meta" / "info.json").read_text())
            repo_id = info.get("repo_id") or f"local/{path.resolve().name}"
            try:
                return LeRobotDataset(repo_id, root=path, revision=revision, video_backend=backend)
            except Exception as e:
                if is_internal_error(e):
                    raise
                raise SigmaUserError(f"{path}: cannot read the LeRobot dataset: {e}") from e
        if not _HUB_ID.match(dataset):
            raise SigmaUserError(f"{dataset}: no such dataset directory")
        try:
            return LeRobotDataset(dataset, revision=revision, video_backend=backend)
        except Exception as e:
            if is_internal_error(e):
                raise
            raise SigmaUserError(
                f"{dataset}: no local directory of that name, and fetching it from the "
                f"Hugging Face hub failed ({type(e).__name__}: {str(e)[:200]}); pass a local root"
            ) from e

    def episode_lengths(self) -> dict[int, int]:
        return {e: b - a for e, (a, b) in sorted(self._ranges.items())}

    def read(self, index: int, image_size: int) -> Episode:
        a, b = self._ranges[index]
        rows = self._table[a:b]
        # Cameras decode in parallel: PyAV and the resize release the GIL.
        with ThreadPoolExecutor(max_workers=len(self.keys)) as pool:
            jobs = {
                c: pool.submit(self._frames, index, key, rows, image_size)
                for c, key in self.keys.items()
            }
            frames = {c: job.result() for c, job in jobs.items()}
        task = self.ds.meta.tasks.iloc[int(rows["task_index"][0])].name
        return Episode(
            index=index,
            task=str(task),
            action=np.asarray(rows[ACTION], dtype=np.float32),
            state=np.asarray(rows[STATE], dtype=np.float32),
            frames=frames,
            environment_state=np.asarray(rows[ENVIRONMENT_STATE], dtype=np.float32)
            if ENVIRONMENT_STATE in rows
            else None,
        )

    def _frames(self, index: int, key: str, rows: dict[str, Any], size: int) -> np.ndarray:
        if key not in self._from_ts:  # stored as images: decoded by the datasets library
            hwc = torch.from_numpy(np.stack(rows[key]))
            return resize_with_pad(hwc.permute(0, 3, 1, 2), size).numpy()
        from lerobot.datasets.video_utils import decode_video_frames

        video = self.root / self.ds.meta.get_video_file_path(index, key)
        stamps = (rows["timestamp"] + self._from_ts[key][index]).tolist()
        out = []
        for i in range(0, len(stamps), _DECODE_CHUNK):
            chunk = decode_video_frames(
                video, stamps[i : i + _DECODE_CHUNK], 1e-4, self.backend, return_uint8=True
            )
            out.append(resize_with_pad(chunk, size))
        return torch.cat(out).numpy()
