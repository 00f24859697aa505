"""The saved-policy format: ``model.safetensors`` + ``sigma.json``, and its helpers.

Layout of a saved directory::

    model.safetensors   every parameter and buffer (shared tensors stored once)
    sigma.json          {"format": 1, "sigma_version", "spec": <resolved spec>,
                         "components": {slot: {kind, type, distribution, version}}}

:class:`~sigma_core.model.policy.SigmaPolicy` owns ``save_pretrained`` and
``from_pretrained``; this module holds the format's names and the helpers both
use (and that training checkpoints reuse for their ``sigma.json``). It never
imports the policy class.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import nn

from sigma_core._version import __version__
from sigma_core.errors import SigmaUserError
from sigma_core.plugins.registry import Registry, get_registry
from sigma_core.spec import SigmaSpec

FORMAT = 1
WEIGHTS = "model.safetensors"
META = "sigma.json"


def component_versions(spec: SigmaSpec, registry: Registry) -> dict[str, dict[str, Any]]:
    """slot -> {kind, type, distribution, version, plugin} of the components a spec uses.

    ``distribution`` is the provenance a reload insists on (:func:`pin_providers`);
    ``plugin`` (the entry-point name) stands in for it where a plugin has no
    distribution (registered directly, as in hermetic tests).
    """
    out = {}
    for slot, (kind, ref) in spec.slots().items():
        info = registry.get(kind, ref.type, ref.provider)
        out[slot] = {
            "kind": kind,
            "type": ref.type,
            "distribution": info.distribution,
            "version": info.version,
            "plugin": info.plugin,
        }
    return out


def _recorded_provider(saved: dict[str, Any]) -> str | None:
    return saved.get("distribution") or saved.get("plugin")


def _describe(name: str | None, version: str | None) -> str:
    return f"{name} {version or ''}".strip() if name else "an unnamed plugin"


def pin_providers(meta: dict[str, Any], registry: Registry, source: str) -> dict[str, Any]:
    """The saved spec with every slot pinned (``from:``) to the provider recorded for it.

    A checkpoint reloads exactly the components it was trained with: a plugin
    that registers the same kind and name (a look-alike with the same tensor
    names included) is never built in their place, whatever the clash rule or
    ``SIGMA_PREFER_PLUGINS`` say. Runs on metadata only, before anything is built
    or any tensor is read.

    Raises:
        SigmaUserError: a recorded provider is not installed (it names the slot,
            the component, the recorded and the installed providers, and the fix).
    """
    spec = json.loads(json.dumps(meta["spec"]))  # a deep copy; the caller's meta is kept
    problems, missing = [], set()
    for slot, saved in meta["components"].items():
        kind, name, want = saved["kind"], saved["type"], _recorded_provider(saved)
        found = registry.providers(kind, name)
        chosen = next((c for c in found if want in (c.distribution, c.plugin)), None)
        if chosen is None:
            offered = ", ".join(_describe(c.distribution or c.plugin, c.version) for c in found)
            problems.append(
                f"{slot}: {kind} {name!r} was saved from "
                f"{_describe(want, saved.get('version'))}; installed providers of {name!r}: "
                f"{offered or 'none'}"
            )
            if saved.get("distribution"):
                version = saved.get("version")
                missing.add(f"{want}=={version}" if version else want)
            continue
        *parents, last = slot.split(".")
        container = spec
        for part in parents:
            container = container.setdefault(part, {})
        entry = container.get(last)
        if isinstance(entry, dict):
            entry["from"] = chosen.distribution or chosen.plugin
    if problems:
        hint = f" (pip install {' '.join(sorted(missing))})" if missing else ""
        raise SigmaUserError(
            f"{source}: this checkpoint was trained with components whose provider is not "
            "installed:\n  " + "\n  ".join(problems) + "\ninstall the recorded distribution"
            f"{hint}; a checkpoint never reloads another provider's component of the same "
            "name, even one with the same tensor names"
        )
    return spec


def policy_meta(spec: SigmaSpec, registry: Registry | None = None) -> dict[str, Any]:
    """The ``sigma.json`` contents: format, Sigma version, resolved spec, component versions."""
    return {
        "format": FORMAT,
        "sigma_version": __version__,
        "spec": spec.model_dump(mode="json"),
        "components": component_versions(spec, registry or get_registry()),
    }


def write_meta(directory: str | Path, meta: dict[str, Any]) -> None:
    """Write ``sigma.json`` into ``directory`` (a temporary directory being filled)."""
    (Path(directory) / META).write_text(json.dumps(meta, indent=2) + "\n")


def read_meta(directory: str | Path) -> dict[str, Any]:
    """Read and check ``sigma.json`` of a saved policy or training checkpoint."""
    path = Path(directory) / META
    if not path.is_file():
        raise SigmaUserError(f"{directory}: not a Sigma checkpoint (no {META})")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise SigmaUserError(f"{path}: invalid JSON ({exc})") from exc
    if meta.get("format") != FORMAT:
        raise SigmaUserError(f"{path}: checkpoint format {meta.get('format')!r}, expected {FORMAT}")
    return meta


def weights_file(directory: str | Path) -> Path:
    """``directory/model.safetensors``, or a clear error when it is missing."""
    weights = Path(directory) / WEIGHTS
    if not weights.is_file():
        raise SigmaUserError(f"{directory}: missing {WEIGHTS}")
    return weights


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
        providers = registry.providers(saved["kind"], saved["type"])
        info = next((c for c in providers if c.distribution == saved["distribution"]), providers[0])
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


def init_from_checkpoint(module: nn.Module, directory: str | Path) -> dict[str, Any]:
    """Copy every tensor of a saved policy into ``module`` where name and shape match.

    Stage ``sigma`` starts from the base stage's weights this way: the frozen
    tau = 0 path (vision, backbone, query, heads) is the trained base rather
    than a random initialisation, and the new telepathy/LoRA tensors keep their
    own initialisation where the saved policy has none. Returns counts of
    ``loaded`` tensors, ``skipped`` ones (shape differs), ``new`` ones (absent) and
    ``unused`` saved ones (no tensor of that name here: the saved model had a part
    this one lacks), and the first few names of the last two kinds in ``examples``.
    """
    from safetensors import safe_open

    read_meta(directory)
    weights = weights_file(directory)
    own = module.state_dict()
    counts = {"loaded": 0, "skipped": 0, "new": 0}
    examples: list[str] = []
    with safe_open(str(weights), framework="pt") as f:
        saved = set(f.keys())
        for name, tensor in own.items():
            if name not in saved:
                counts["new"] += 1
                continue
            value = f.get_tensor(name)
            if value.shape != tensor.shape:
                counts["skipped"] += 1
                examples.append(name)
                continue
            tensor.copy_(value)  # state_dict tensors are detached views of the parameters
            counts["loaded"] += 1
    unused = sorted(saved - set(own))
    counts["unused"] = len(unused)
    if counts["loaded"] == 0:
        raise SigmaUserError(f"train.init_from {directory}: no tensor matches this model")
    return {**counts, "examples": [*examples, *unused][:3]}


def check_pretrained(meta: dict[str, Any], built: dict[str, dict[str, Any]], source: str) -> None:
    """Fail clearly when pretrained weights differ from the ones a checkpoint was trained on.

    ``meta["pretrained"]`` (saved) and ``built`` (the rebuilt policy's
    ``pretrained_sources()``) map ``slot.module`` to ``{source, revision, sha256}``;
    a sha256 of ``None`` (a hub id, not hashed) is not compared.
    """
    problems = []
    for name, saved in meta.get("pretrained", {}).items():
        now = built.get(name)
        if now is None:
            problems.append(f"{name}: saved with weights from {saved['source']}, now none")
        elif saved.get("sha256") and now.get("sha256") and saved["sha256"] != now["sha256"]:
            problems.append(
                f"{name}: {now['source']} has sha256 {now['sha256'][:12]}..., the checkpoint "
                f"was trained on {saved['source']} with sha256 {saved['sha256'][:12]}..."
            )
    if problems:
        raise SigmaUserError(
            f"{source}: the pretrained weights differ from the ones this checkpoint was "
            "trained on:\n  " + "\n  ".join(problems) + "\nits LoRA and heads belong to those "
            "weights (pass strict_versions=False to load anyway)"
        )
