"""A commit journal that makes LeRobot recording safe to kill and to resume.

LeRobot 0.6.1 keeps the current data and episode-metadata parquet files open
(``pq.ParquetWriter``) until ``finalize()``, buffers episode metadata in memory,
and rewrites ``meta/info.json`` / ``stats.json`` / ``tasks.parquet`` in place
(not atomically) on every ``save_episode``. A process killed mid-recording
therefore leaves footer-less parquet files and an ``info.json`` that counts
episodes whose data cannot be read: the whole dataset fails to load.

The recorder instead commits in small steps: it opens the dataset with
``LeRobotDataset.resume`` (which always starts *new* data, episode and video
files), saves a few episodes, calls ``finalize()`` and then writes this journal
(``meta/sigma_sim.json``, tmp file + ``os.replace``). The journal holds the
source, config and seed, the attempt counter, and a snapshot of the committed
state: the list of data / episode / video files with their sizes and the
contents of the three mutable metadata files. :meth:`Journal.rollback` brings a
dataset back to that snapshot: files written after it are deleted and the
metadata files restored. Between commits the on-disk dataset is always the last
committed one, except during the short ``save_episode`` / ``finalize`` window;
the next run repairs that before it continues.
"""

from __future__ import annotations

import base64
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sigma_core import SigmaUserError, atomic_write_bytes
from sigma_lerobot.schema import RECORDING_FILE

JOURNAL_PATH = RECORDING_FILE  # sigma preprocess copies its config into meta.json
FORMAT = 1
#: Folders whose files belong to committed episodes (anything else there is stray).
_DATA_DIRS = ("data", "meta/episodes", "videos", "images")
#: Metadata files that LeRobot rewrites in place, restored on rollback.
_MUTABLE = {"info": "meta/info.json", "stats": "meta/stats.json", "tasks": "meta/tasks.parquet"}


def _data_files(root: Path) -> dict[str, int]:
    files: dict[str, int] = {}
    for sub in _DATA_DIRS:
        base = root / sub
        if base.is_dir():
            for path in base.rglob("*"):
                if path.is_file():
                    files[path.relative_to(root).as_posix()] = path.stat().st_size
    return files


@dataclass
class Journal:
    """The committed state of a dataset recorded by a Sigma data source."""

    source: str
    config: dict[str, Any]
    seed: int
    episodes: int = 0
    attempts: int = 0
    episode_attempts: list[int] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)
    files: dict[str, int] = field(default_factory=dict)
    metadata: dict[str, str | None] = field(default_factory=dict)

    # -- persistence --------------------------------------------------------
    @classmethod
    def path(cls, root: Path) -> Path:
        """Where the journal of the dataset at ``root`` lives."""
        return root / JOURNAL_PATH

    @classmethod
    def load(cls, root: Path) -> Journal | None:
        """The journal of ``root``, or ``None`` when it has none."""
        path = cls.path(root)
        if not path.is_file():
            return None
        try:
            raw = json.loads(path.read_text())
            if raw.pop("format", None) != FORMAT:
                raise ValueError("unknown journal format")
            return cls(**raw)
        except (ValueError, TypeError) as exc:
            raise SigmaUserError(
                f"{path}: unreadable journal ({exc}); record into a new folder"
            ) from exc

    def save(self, root: Path) -> None:
        """Write the journal atomically."""
        body = {"format": FORMAT, **self.__dict__}
        atomic_write_bytes(self.path(root), json.dumps(body, indent=1).encode())

    # -- commit / rollback ----------------------------------------------------
    def snapshot(self, root: Path) -> None:
        """Record the dataset at ``root`` (just finalized) as the committed state."""
        self.files = _data_files(root)
        self.metadata = {}
        for key, rel in _MUTABLE.items():
            path = root / rel
            self.metadata[key] = (
                base64.b64encode(path.read_bytes()).decode() if path.is_file() else None
            )

    def rollback(self, root: Path) -> list[str]:
        """Bring ``root`` back to the committed state; returns what was removed or restored.

        Raises:
            SigmaUserError: a committed file is missing or changed size.
        """
        changed: list[str] = []
        on_disk = _data_files(root)
        for rel, size in self.files.items():
            if on_disk.get(rel) != size:
                raise SigmaUserError(
                    f"{root}: committed file {rel} is missing or was modified; the dataset "
                    "cannot be resumed (record into a new folder)"
                )
        for rel in sorted(set(on_disk) - set(self.files)):
            (root / rel).unlink()
            changed.append(f"removed {rel}")
        for sub in _DATA_DIRS:
            _prune_empty_dirs(root / sub)
        for entry in root.iterdir():  # LeRobot's video encoder makes tmp* folders in root
            if entry.is_dir() and entry.name.startswith("tmp"):
                shutil.rmtree(entry)
                changed.append(f"removed {entry.name}/")
        for key, rel in _MUTABLE.items():
            path, blob = root / rel, self.metadata.get(key)
            want = None if blob is None else base64.b64decode(blob)
            have = path.read_bytes() if path.is_file() else None
            if want == have:
                continue
            if want is None:
                path.unlink()
            else:
                atomic_write_bytes(path, want)
            changed.append(f"restored {rel}")
        return changed


def _prune_empty_dirs(base: Path) -> None:
    if not base.is_dir():
        return
    for path in sorted(base.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if path.is_dir() and not any(path.iterdir()):
            path.rmdir()
