"""Declutter a Sigma policy's tau pass in the SO-101 simulator (``sigma declutter``).

1. Visit: the policy runs closed-loop in the shards' scenes (which must have distractor
   cubes), ``episodes`` seeds from ``seed`` (keep them disjoint from the evaluation's
   ``10_000 + i``); at every planning step the images it read, its joints, memory and
   instruction are kept with the same instant rendered without the distractors
   (:func:`visit`, cached in ``OUT/visited.safetensors``).
2. Fit the tau pass's vision towards the frozen base's view of the uncluttered renders
   (:func:`sigma_core.train.declutter.fit_declutter`, ``L_declutter``).
3. Save the policy to ``OUT/policy`` (same spec: nothing privileged is read at inference)
   and the run's record to ``OUT/declutter.json``.

A rerun with the same settings reads the saved visits back (a killed run resumes after
them) and returns the record when the policy is saved; other settings are refused.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from sigma_core import SigmaPolicy, SigmaUserError, atomic_write_bytes
from sigma_core.data import read_meta, shard_dims
from sigma_core.train.declutter import ClutteredStates, check_declutter, fit_declutter
from sigma_sim.rollout import EpisodeResult, control_fps, rollout, scene_config

VISITED = "visited.safetensors"
VISITED_ALSO = "visited-also.safetensors"
#: ``also``'s visits start this far after ``seed`` (disjoint from the main visits)
ALSO_SEED_OFFSET = 10_000
RECORD = "declutter.json"


def visit(
    policy: SigmaPolicy, meta: dict[str, Any], episodes: int, seed: int, max_seconds: float
) -> tuple[ClutteredStates, list[EpisodeResult]]:
    """Closed-loop episodes of ``policy``: every planning step's observation, the memory
    it planned with and the same instant rendered without the distractors."""
    rows: dict[str, list[Any]] = {k: [] for k in ("images", "clean", "state", "truth", "memory")}
    texts: list[str] = []

    def record(batch: Any, clean: torch.Tensor) -> None:
        memory = getattr(policy, "_memory", None)  # m_{t-1}: None right after reset
        if memory is None:
            memory = policy.memory.initial_state(1, batch.state.device)
        rows["images"].append(batch.images.half())
        rows["clean"].append(clean.half())
        rows["state"].append(batch.state)
        rows["truth"].append(batch.environment_state.float())
        rows["memory"].append(memory.detach().clone())
        texts.extend(batch.texts)

    results = rollout(
        policy,
        meta,
        episodes,
        seed=seed,
        max_seconds=max_seconds,
        workers=1,
        on_plan=record,
        uncluttered=True,
    )
    states = ClutteredStates(texts=texts, **{k: torch.cat(v) for k, v in rows.items()})
    return states, results


TENSORS = ("images", "clean", "state", "truth", "memory")


def _save_states(
    path: Path, states: ClutteredStates, settings: dict[str, Any], success: float
) -> None:
    from safetensors.torch import save

    tensors = {k: getattr(states, k).contiguous() for k in TENSORS}
    meta = {
        "texts": json.dumps(states.texts),
        "settings": json.dumps(settings, sort_keys=True),
        "success": json.dumps(success),
    }
    atomic_write_bytes(path, save(tensors, metadata=meta))


def _load_states(
    path: Path, settings: dict[str, Any]
) -> tuple[ClutteredStates, float] | tuple[None, None]:
    """The visits saved at ``path`` with these settings and their closed loop's success;
    ``(None, None)`` when there are none."""
    from safetensors import safe_open

    if not path.is_file():
        return None, None
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        saved = json.loads(meta.get("settings", "null"))
        if saved != json.loads(json.dumps(settings, sort_keys=True)):
            raise SigmaUserError(
                f"{path}: visits made with other settings ({saved} vs {settings});"
                " use them again or another --out"
            )
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open)
    states = ClutteredStates(texts=json.loads(meta["texts"]), **tensors)
    return states, json.loads(meta["success"])


def declutter(
    policy_dir: str | Path,
    shards: str | Path,
    out: str | Path,
    episodes: int = 150,
    steps: int = 1500,
    seed: int = 50_000,
    max_seconds: float = 10.0,
    batch_size: int = 32,
    lr: float = 3e-4,
    also: str | Path | None = None,
    also_episodes: int = 100,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run (or resume) declutter on the Sigma policy at ``policy_dir`` (module docstring).

    Args:
        policy_dir: a Sigma policy with ``vision.tau_stem`` (``sigma train``'s
            ``RUN/policy``, e.g. configs/sigma-declutter.yaml laid over a base).
        shards: shards whose scenes have distractor cubes (the closed loop's scene and
            statistics), e.g. the quickstart's ``shards-transfer``.
        out: where ``visited.safetensors``, ``policy/`` and ``declutter.json`` go.
        episodes, seed, max_seconds: the visits: episodes ``seed + i``.
        steps, batch_size, lr: the fit.
        also: shards of scenes to visit too, ``also_episodes`` seeds from ``seed +
            ALSO_SEED_OFFSET`` (``OUT/visited-also.safetensors``), e.g. the one-cube
            scenes the base was trained in: there the uncluttered render is the image
            itself, so the fit also learns to leave a scene with nothing to remove as
            the base sees it.
        log: called with progress lines.

    Returns:
        The record written to ``OUT/declutter.json``: settings, visited states, the
        visits' closed-loop success, the loss curve and the seconds each part took.

    Raises:
        SigmaUserError: not a policy directory, a policy without a tau stem, shards
            without distractors, bad counts, or saved visits with other settings.
    """
    for name, value in (("episodes", episodes), ("steps", steps), ("batch_size", batch_size)):
        if value < 1:
            raise SigmaUserError(f"{name} must be >= 1, got {value}")
    out, shards, policy_dir = Path(out), Path(shards), Path(policy_dir)
    meta = read_meta(shards)  # a clear error for a missing or incomplete shard directory
    size = int(shard_dims(meta)["image_size"])
    if not scene_config(meta, distractors=None, image_size=size, fps=control_fps(meta)).distractors:
        raise SigmaUserError(
            f"{shards}: its scenes have no distractor cubes, so there is nothing to declutter"
            " (record them with sigma data sim --distractors N)"
        )
    if not (policy_dir / "sigma.json").is_file():
        raise SigmaUserError(f"{policy_dir}: not a policy directory (no sigma.json)")
    settings = {
        "policy": str(policy_dir),
        "shards": str(shards),
        "episodes": episodes,
        "seed": seed,
        "max_seconds": max_seconds,
    }
    also_settings = None
    if also is not None:
        read_meta(Path(also))
        also_settings = settings | {
            "shards": str(also),
            "episodes": also_episodes,
            "seed": seed + ALSO_SEED_OFFSET,
        }
    fit_settings = {"steps": steps, "batch_size": batch_size, "lr": lr, "also": also_settings}
    record_path = out / RECORD
    if record_path.is_file() and (out / "policy" / "sigma.json").is_file():
        record = json.loads(record_path.read_text())
        if record.get("settings") == settings | fit_settings:
            return record
        raise SigmaUserError(
            f"{record_path}: made with other settings ({record.get('settings')});"
            " use them again or another --out"
        )
    policy = SigmaPolicy.from_pretrained(policy_dir).eval()
    check_declutter(policy, str(policy_dir))
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    states, success = _load_states(out / VISITED, settings)
    if states is None:
        if log:
            log(f"visiting {episodes} episodes from seed {seed}")
        states, results = visit(policy, meta, episodes, seed, max_seconds)
        success = sum(r.success for r in results) / len(results)
        _save_states(out / VISITED, states, settings, success)
    if also_settings is not None:
        extra, _ = _load_states(out / VISITED_ALSO, also_settings)
        if extra is None:
            also_meta = read_meta(Path(also_settings["shards"]))
            if log:
                log(f"visiting {also_episodes} episodes of {also} too")
            first = also_settings["seed"]
            extra, results = visit(policy, also_meta, also_episodes, first, max_seconds)
            rate = sum(r.success for r in results) / len(results)
            _save_states(out / VISITED_ALSO, extra, also_settings, rate)
        states = states + extra
    t1 = time.perf_counter()
    if log:
        log(f"fitting on {len(states)} states, {steps} steps")
    curve = fit_declutter(policy, states, steps, seed=0, lr=lr, batch_size=batch_size)
    t2 = time.perf_counter()
    trained_on = json.loads((policy_dir / "sigma.json").read_text()).get("trained_on")
    policy.save_pretrained(out / "policy", trained_on=trained_on)
    record = {
        "settings": settings | fit_settings,
        "states": len(states),
        "visit_success": success,
        "loss": curve,
        "seconds": {"visit": round(t1 - t0, 1), "fit": round(t2 - t1, 1)},
    }
    atomic_write_bytes(record_path, json.dumps(record, indent=1).encode())
    return record
