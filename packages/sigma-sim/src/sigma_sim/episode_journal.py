"""A journal of finished closed-loop episodes, so a killed evaluation resumes where it stopped.

One JSON object per line, appended (and ``fsync`` ed) as each episode finishes::

    {"format": 1, "policy": "<sha256 of the policy>", "settings": "<sha256 of the settings>",
     "seed": 10003, "result": {...EpisodeResult.as_dict()...}}

An entry is reused only when its ``policy`` and ``settings`` digests and its
``seed`` match the run asking for it, so one file can hold evaluations under
several settings without mixing them. A last line without its newline is a write
that a kill interrupted: it is dropped (the file is cut back to the last complete
line) and that episode runs again. Any other line that is not an entry is an
error naming the file and line.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from sigma_core import SigmaUserError

FORMAT = 1
T = TypeVar("T")


def digest(value: Any) -> str:
    """SHA-256 of ``value`` as canonical JSON (sorted keys)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


class EpisodeJournal:
    """The JSONL journal at ``path`` for one policy under one set of settings.

    Args:
        path: the journal file (created with its folder on the first append).
        policy: a digest that identifies the policy (e.g. of its weights).
        settings: everything else that decides an episode's outcome, reduced to a digest.
    """

    def __init__(self, path: Path, policy: str, settings: dict[str, Any]) -> None:
        self.path = Path(path)
        self.policy = policy
        self.settings = digest(settings)

    def load(self, parse: Callable[[dict[str, Any]], T]) -> dict[int, T]:
        """Finished episodes of this policy and settings: ``{seed: parse(result)}``.

        Raises:
            SigmaUserError: a line (other than a torn last one) that is not an entry,
                or whose result ``parse`` rejects; the message names the file and line.
        """
        if not self.path.is_file():
            return {}
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):  # a write cut short by a kill
            cut = data.rfind(b"\n") + 1
            with open(self.path, "r+b") as f:
                f.truncate(cut)
                f.flush()
                os.fsync(f.fileno())
            print(
                f"sigma_sim: {self.path}: dropped an incomplete last line (its episode reruns)",
                file=sys.stderr,
            )
            data = data[:cut]
        out: dict[int, T] = {}
        for n, line in enumerate(data.decode(errors="replace").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                if not isinstance(entry, dict) or entry.get("format") != FORMAT:
                    raise ValueError(f"not a format-{FORMAT} journal entry")
                seed = entry["seed"]
                if not isinstance(seed, int) or not isinstance(entry["result"], dict):
                    raise ValueError("'seed' must be an integer and 'result' an object")
                if entry["policy"] != self.policy or entry["settings"] != self.settings:
                    continue
                out[seed] = parse(entry["result"])
            except (ValueError, KeyError, TypeError) as exc:
                raise SigmaUserError(
                    f"{self.path}, line {n}: unreadable closed-loop journal entry "
                    f"({type(exc).__name__}: {exc}); delete that line (its episode runs again) "
                    "or the file"
                ) from exc
        return out

    def append(self, seed: int, result: dict[str, Any]) -> None:
        """Write one finished episode and ``fsync`` it."""
        entry = {
            "format": FORMAT,
            "policy": self.policy,
            "settings": self.settings,
            "seed": seed,
            "result": result,
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")
            f.flush()
            os.fsync(f.fileno())
