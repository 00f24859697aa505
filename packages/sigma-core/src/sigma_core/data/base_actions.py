"""Precomputed base actions a_base next to the shards (``sigma preprocess --base-policy``).

Running an external base policy (π0.5's 10-step denoiser over a 4 B model) in
every training step would dominate the step; a_base of a frozen base does not
change, so it is computed once per window and stored::

    base_actions/shard_00000.safetensors   base.vector (W, A), base.chunk (W, H_c, A),
                                           base.trajectory (W, T, A): dataset units
    base_actions.json                      written last: the base policy's spec entry,
                                           its pretrained sources, each file's sha256

Resume: each shard's file is written atomically and recorded in
``base_actions/.progress.json``; a rerun with the same base policy skips the
files whose checksums match. A different base policy is refused (use another
shard directory or ``--overwrite-base-actions``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sigma_core.data.shards import verify_shard
from sigma_core.errors import SigmaUserError

RECORD = "base_actions.json"
DIRECTORY = "base_actions"
PROGRESS = ".progress.json"
FORMAT = "sigma-base-actions/1"
SCALES = ("vector", "chunk", "trajectory")


def read_record(root: str | Path) -> dict[str, Any] | None:
    """``base_actions.json`` of a shard directory, or None when it has no base actions."""
    path = Path(root) / RECORD
    if not path.is_file():
        return None
    record = json.loads(path.read_text())
    if record.get("format") != FORMAT:
        raise SigmaUserError(f"{path}: format {record.get('format')!r}, expected {FORMAT}")
    return record


def matches(record: Mapping[str, Any] | None, base_policy: Mapping[str, Any]) -> bool:
    """Whether stored base actions were computed by this base policy spec entry."""
    return record is not None and record["base_policy"] == dict(base_policy)


def load_base_actions(
    root: Path, record: Mapping[str, Any], shards: list[Mapping[str, Any]], verify: bool = True
) -> list[Any]:
    """The base-action tensors of each of meta.json's ``shards``, checked against the record."""
    from safetensors import safe_open

    out = []
    for rec in shards:
        stored = record["files"].get(rec["file"])
        if stored is None:
            raise SigmaUserError(
                f"{root / RECORD}: no base actions for {rec['file']}; "
                "run sigma preprocess --base-policy again"
            )
        path = root / stored["file"]
        verify_shard(path, stored["sha256"] if verify else None, stored["bytes"])
        with safe_open(str(path), "pt") as f:
            out.append({s: f.get_tensor(f"base.{s}") for s in SCALES})
    return out


def check_sources(record: Mapping[str, Any], sources: Mapping[str, Any], where: str) -> None:
    """Refuse base actions computed from other pretrained weights than the ones built now.

    ``sources`` is the base policy's ``pretrained_sources`` ({module: {source,
    revision, sha256}}); a sha256 of None (a hub id, random init) is not compared.
    """
    for name, now in sources.items():
        then = record["sources"].get(name)
        if then and then.get("sha256") and now.get("sha256") and then["sha256"] != now["sha256"]:
            raise SigmaUserError(
                f"{where}: the base actions were computed with {then['source']} "
                f"(sha256 {then['sha256'][:12]}...), the base policy now loads {now['source']} "
                f"(sha256 {now['sha256'][:12]}...); run sigma preprocess --base-policy again"
            )
