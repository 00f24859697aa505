"""Checkpoint I/O of an assembled policy: safetensors weights + resolved spec + versions.

Layout of a saved directory::

    model.safetensors   every parameter and buffer (shared tensors stored once)
    sigma.json          {"format": 1, "sigma_version", "spec": <resolved spec>,
                         "components": {slot: {kind, type, distribution, version}}}

Writes go to a temporary sibling directory that is renamed into place, so a
crash never leaves a half-written checkpoint that looks complete.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from sigma_core._version import __version__
from sigma_core.errors import SigmaUserError
from sigma_core.registry import Registry, get_registry
from sigma_core.spec import SigmaSpec, validate_spec

FORMAT = 1
WEIGHTS = "model.safetensors"
META = "sigma.json"


def component_versions(spec: SigmaSpec, registry: Registry) -> dict[str, dict[str, Any]]:
    """slot -> {kind, type, distribution, version} of the components a spec uses."""
    out = {}
    for slot, (kind, ref) in spec.slots().items():
        info = registry.get(kind, ref.type)
        out[slot] = {
            "kind": kind,
            "type": ref.type,
            "distribution": info.distribution,
            "version": info.version,
        }
    return out


def policy_meta(spec: SigmaSpec, registry: Registry | None = None) -> dict[str, Any]:
    """The ``sigma.json`` contents: format, Sigma version, resolved spec, component versions."""
    return {
        "format": FORMAT,
        "sigma_version": __version__,
        "spec": spec.model_dump(mode="json"),
        "components": component_versions(spec, registry or get_registry()),
    }


def weights_file(directory: str | Path) -> Path:
    """``directory/model.safetensors``, or a clear error when it is missing."""
    weights = Path(directory) / WEIGHTS
    if not weights.is_file():
        raise SigmaUserError(f"{directory}: missing {WEIGHTS}")
    return weights


def save_policy(policy: Any, directory: str | Path, registry: Registry | None = None) -> Path:
    """Save ``policy`` (a :class:`~sigma_core.policy.SigmaPolicy`) atomically to ``directory``."""
    from safetensors.torch import save_model

    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    meta = policy_meta(policy.spec, registry)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        save_model(policy, str(tmp / WEIGHTS))
        (tmp / META).write_text(json.dumps(meta, indent=2) + "\n")
        if directory.exists():
            old = directory.with_name(f".{directory.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(directory, old)
            os.replace(tmp, directory)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, directory)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return directory


def read_meta(directory: str | Path) -> dict[str, Any]:
    """Read and check ``sigma.json`` of a saved policy."""
    path = Path(directory) / META
    if not path.is_file():
        raise SigmaUserError(f"{directory}: not a Sigma checkpoint (no {META})")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise SigmaUserError(f"{path}: invalid JSON ({exc})") from None
    if meta.get("format") != FORMAT:
        raise SigmaUserError(f"{path}: checkpoint format {meta.get('format')!r}, expected {FORMAT}")
    return meta


def check_versions(meta: dict[str, Any], registry: Registry, source: str) -> None:
    """Fail clearly when an installed component differs from the one that was saved."""
    problems = []
    for slot, saved in meta["components"].items():
        if (saved["kind"], saved["type"]) not in registry:
            problems.append(
                f"{slot}: {saved['kind']} {saved['type']!r} is not installed "
                f"(saved from {saved['distribution']} {saved['version']})"
            )
            continue
        info = registry.get(saved["kind"], saved["type"])
        if (info.distribution, info.version) != (saved["distribution"], saved["version"]):
            problems.append(
                f"{slot}: saved with {saved['distribution']} {saved['version']}, "
                f"installed {info.distribution} {info.version}"
            )
    if problems:
        raise SigmaUserError(
            f"{source}: components differ from the ones this checkpoint was saved with:\n  "
            + "\n  ".join(problems)
            + "\ninstall the saved versions (or pass strict_versions=False to load anyway)"
        )


def load_policy(
    directory: str | Path, registry: Registry | None = None, strict_versions: bool = True
) -> Any:
    """Rebuild a saved policy from its resolved spec and load its weights."""
    from safetensors.torch import load_model

    from sigma_core.policy import SigmaPolicy

    registry = registry or get_registry()
    meta = read_meta(directory)
    if strict_versions:
        check_versions(meta, registry, str(directory))
    spec = validate_spec(meta["spec"], registry, source=f"{directory}/{META}")
    policy = SigmaPolicy(spec, registry)
    load_model(policy, str(weights_file(directory)), strict=True)
    return policy


def init_from_checkpoint(policy: Any, directory: str | Path) -> dict[str, int]:
    """Copy every tensor of a saved policy into ``policy`` where name and shape match.

    Stage ``sigma`` starts from the base stage's weights this way: the frozen
    tau = 0 path (vision, backbone, query, heads) is the trained base rather
    than a random initialisation, and the new telepathy/LoRA tensors keep their
    own initialisation where the saved policy has none. Returns counts of
    ``loaded`` tensors, ``skipped`` ones (shape differs) and ``new`` ones (absent).
    """
    from safetensors import safe_open

    read_meta(directory)
    weights = weights_file(directory)
    own = policy.state_dict()
    counts = {"loaded": 0, "skipped": 0, "new": 0}
    with safe_open(str(weights), framework="pt") as f:
        saved = set(f.keys())
        for name, tensor in own.items():
            if name not in saved:
                counts["new"] += 1
                continue
            value = f.get_tensor(name)
            if value.shape != tensor.shape:
                counts["skipped"] += 1
                continue
            tensor.copy_(value)  # state_dict tensors are detached views of the parameters
            counts["loaded"] += 1
    if counts["loaded"] == 0:
        raise SigmaUserError(f"train.init_from {directory}: no tensor matches this model")
    return counts
