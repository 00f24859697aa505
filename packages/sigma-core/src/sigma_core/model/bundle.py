"""Exports that load anywhere: the frozen base a policy sits on, bundled or named.

A stage-``sigma`` policy references its frozen base (``base_policy.path``: a
stage-1 Sigma checkpoint, a LeRobot policy directory) by path and sha256; its
weights are never copied into ``model.safetensors``. A folder meant for other
machines therefore either

* **bundles** the base as a subfolder (``base/``) and records, in
  ``sigma.json`` (and LeRobot's ``config.json``), ``"bundled": {"base_policy.path":
  "base"}``: the spec key and the folder relative to the saved policy, which
  every loader resolves against the folder it loads (:func:`resolve_bundled`); or
* **names** it: ``base_policy.path`` becomes a hub id or path the user gives,
  which loaders resolve with :func:`sigma_core.pretrained.local_directory`.

Either way the sha256 recorded at training still guards the load: a base with
other weights is refused.
"""

from __future__ import annotations

import copy
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sigma_core.errors import SigmaUserError
from sigma_core.pretrained import weights_fingerprint

#: ``sigma.json`` / ``config.json`` key: {dotted spec key: folder relative to the policy}
BUNDLED = "bundled"
#: the subfolder a bundled base is copied to
BASE_FOLDER = "base"
#: bases larger than this are not bundled (name them with ``base_model`` instead)
BUNDLE_LIMIT_BYTES = 2 * 1024**3


def _get(spec: Mapping[str, Any], key: str) -> Any:
    node: Any = spec
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _set(spec: dict[str, Any], key: str, value: Any) -> None:
    *parents, last = key.split(".")
    node = spec
    for part in parents:
        node = node[part]
    node[last] = value


def resolve_bundled(
    spec: Mapping[str, Any], bundled: Mapping[str, str], root: str | Path
) -> dict[str, Any]:
    """A copy of ``spec`` whose bundled keys point into ``root`` (the folder being loaded).

    Raises:
        SigmaUserError: a bundled folder is missing (the folder was copied in part).
    """
    out = copy.deepcopy(dict(spec))
    for key, folder in bundled.items():
        path = Path(root) / folder
        if not path.is_dir():
            raise SigmaUserError(
                f"{root}: its {key} is bundled as {folder}/, which is missing; copy or "
                "download the whole folder"
            )
        if _get(out, key) is not None:
            _set(out, key, str(path))
    return out


def path_keys(spec: Mapping[str, Any], source: str) -> list[str]:
    """Dotted spec keys whose value is the path ``source``: ``base_policy.path`` and the
    model slots that load the same weights (a π0.5 base, backbone and vision share one)."""
    keys = []
    if _get(spec, "base_policy.path") == source:
        keys.append("base_policy.path")
    for slot, entry in (spec.get("model") or {}).items():
        if isinstance(entry, Mapping) and entry.get("path") == source:
            keys.append(f"model.{slot}.path")
    return keys


def _folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def make_portable(
    meta: Mapping[str, Any],
    directory: str | Path,
    source: str | Path,
    base_model: str | None = None,
) -> dict[str, Any]:
    """``meta`` (a ``sigma.json``) rewritten so that its base loads from any directory.

    Args:
        meta: the saved policy's metadata (``spec``, ``pretrained``, ``bundled``).
        directory: the folder being written; a bundled base is copied to
            ``directory/base``.
        source: the folder ``meta`` was read from (bundled paths resolve there).
        base_model: a hub id or path to name the base by instead of bundling it.

    Without ``base_policy.path`` (the internal τ = 0 base, or a base with no
    path) ``meta`` comes back unchanged.

    Raises:
        SigmaUserError: the base is not found from here, its weights differ from
            the ones the policy was trained on, or it is too large to bundle.
    """
    out = copy.deepcopy(dict(meta))
    spec = resolve_bundled(out["spec"], out.pop(BUNDLED, {}), source)
    path = _get(spec, "base_policy.path")
    if not path:
        out["spec"] = spec
        return out
    keys = path_keys(spec, path)
    records = {k: r for k, r in (out.get("pretrained") or {}).items() if r.get("source") == path}
    if base_model:
        for key in keys:
            _set(spec, key, base_model)
        for record in records.values():
            record["source"] = base_model
        out["spec"] = spec
        return out
    local = Path(path).expanduser()
    if not local.is_dir():
        raise SigmaUserError(
            f"base_policy.path {path!r} (the frozen base {source} was trained on): no such "
            f"directory from {Path.cwd()}; export from the directory the run was trained in, "
            "or name the base with --base-model HUB_ID|PATH"
        )
    sha = weights_fingerprint(local)
    for name, record in records.items():
        if record.get("sha256") and sha != record["sha256"]:
            raise SigmaUserError(
                f"base_policy.path {path!r}: its weights (sha256 {sha[:12] if sha else None}...)"
                f" are not the ones {source} was trained on ({name}: sha256 "
                f"{record['sha256'][:12]}...); restore that base or name it with --base-model"
            )
    size = _folder_bytes(local)
    if size > BUNDLE_LIMIT_BYTES:
        raise SigmaUserError(
            f"base_policy.path {path!r}: {size / 1024**3:.1f} GiB, too large to bundle "
            f"(limit {BUNDLE_LIMIT_BYTES / 1024**3:.0f} GiB); push it to the hub and name it "
            "with --base-model HUB_ID"
        )
    shutil.copytree(local, Path(directory) / BASE_FOLDER)
    for key in keys:
        _set(spec, key, BASE_FOLDER)
    for record in records.values():
        record["source"] = BASE_FOLDER
    out["spec"] = spec
    out[BUNDLED] = dict.fromkeys(keys, BASE_FOLDER)
    return out
