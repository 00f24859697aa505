"""DAgger for a camera-only base's scene estimator, in the SO-101 simulator (``sigma dagger``).

A base trained on the truth only (``train.teacher_forcing: 1``) acts on its scene state
like the privileged oracle, but its estimate ``s_hat`` is wrong on the states it visits in
closed loop, which the demonstrations never showed. Each round of :func:`estimator_dagger`:

1. runs the current policy closed-loop on its own estimate, ``episodes`` fresh seeds
   (round ``k`` uses ``seed + k·episodes`` on; keep them disjoint from the evaluation's
   ``10_000 + i``), and records at every planning step what it read and the simulator's
   truth (:func:`visit`);
2. adds them to the aggregate of every round so far (with ``keep="before-contact"``,
   only each episode's plans before the arm first moved the cube: :func:`before_contact`);
3. refits vision and estimator on the aggregate while stage base's objective keeps the
   action path on the demonstrations (:func:`sigma_core.train.refit_estimator`, refit
   seed ``k``);
4. saves the policy to ``OUT/round_k`` and its row to ``OUT/dagger.json``.

The policy's spec is unchanged: it stays a camera-only base that never reads the truth
at inference. A killed run resumes from its last saved round: the aggregate is rebuilt by
replaying the saved rounds' closed loops (deterministic, and checked against the recorded
success rates), and the global random state saved with the round is restored, so a
resumed run ends with the same weights as one that ran through.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, get_args

import torch

from sigma_core import SigmaPolicy, SigmaUserError, atomic_write_bytes
from sigma_core.data import ShardDataset, read_meta
from sigma_core.train import VisitedStates, named_error, refit_estimator
from sigma_sim.rollout import EpisodeResult, rollout

#: The random state saved beside each round's policy (safetensors, one uint8 tensor).
RNG_FILE = "rng.safetensors"
LOG_FILE = "dagger.json"
#: What the refit learns from (``sigma dagger --keep``): every visited plan, or the plans
#: of each episode before its cube was first moved (:func:`before_contact`).
Keep = Literal["all", "before-contact"]
KEEP: tuple[str, ...] = get_args(Keep)
#: :func:`before_contact`: the cube has moved once its (x, y) is this far (squared,
#: normalized units, about 0.5 cm) from where it lay at its episode's second plan.
CONTACT_MOVED = 0.1


def before_contact(
    visited: VisitedStates, results: list[EpisodeResult], moved: float = CONTACT_MOVED
) -> VisitedStates:
    """Each episode's plans before its named cube first moved: the approach.

    In the shipped base's failures the arm knocks the cube as it comes down, and the
    rest of such an episode shows a pushed cube where cubes never start (about half of
    all visited plans); the grasp depends on the estimate before the first touch. Plan
    ``k`` of an episode is kept when ``|xy_j - xy_1|^2 <= moved`` for every
    ``2 <= j <= k`` (``xy``: the truth's entries 0 and 1, the named cube; plan 1 is the
    first after the cube settled; plans 0 and 1 are always kept). ``visited`` holds
    ``results``' episodes in order, episode ``i`` planning ``ceil(steps_i /
    n_action_steps_i)`` times (what :func:`visit` records).

    Raises:
        ValueError: ``visited`` does not hold that many plans.
    """
    keep: list[int] = []
    start = 0
    for r in results:
        plans = -(-r.steps // r.n_action_steps)
        xy = visited.truth[start : start + plans, :2]
        ref = xy[min(1, plans - 1)]
        for k in range(plans):
            if k > 1 and (xy[k] - ref).pow(2).sum() > moved:
                break
            keep.append(start + k)
        start += plans
    if start != len(visited):
        raise ValueError(f"{len(visited)} visited plans, but the episodes planned {start} times")
    idx = torch.tensor(keep, dtype=torch.long)
    return VisitedStates(visited.images[idx], visited.state[idx], visited.truth[idx])


def visit(
    policy: SigmaPolicy, meta: dict[str, Any], episodes: int, seed: int, max_seconds: float
) -> tuple[VisitedStates, list[EpisodeResult]]:
    """Closed-loop episodes of ``policy`` on its own estimate: every planning step's
    images, joints and scene truth (normalized), and the episodes' results."""
    images: list[torch.Tensor] = []
    state: list[torch.Tensor] = []
    truth: list[torch.Tensor] = []

    def record(batch: Any) -> None:
        images.append(batch.images.half())
        state.append(batch.state)
        truth.append(batch.environment_state.float())

    results = rollout(
        policy, meta, episodes, seed=seed, max_seconds=max_seconds, workers=1, on_plan=record
    )
    visited = VisitedStates(torch.cat(images), torch.cat(state), torch.cat(truth))
    return visited, results


def _round_dir(out: Path, k: int) -> Path:
    return out / f"round_{k}"


def _save_round(
    out: Path, k: int, policy: SigmaPolicy, trained_on: Any, log: list[dict[str, Any]]
) -> None:
    from safetensors.torch import save

    policy.save_pretrained(_round_dir(out, k), trained_on=trained_on)
    rng = save({"torch": torch.get_rng_state()})
    atomic_write_bytes(_round_dir(out, k) / RNG_FILE, rng)
    # the log last: a round counts as done once its row is written
    atomic_write_bytes(out / LOG_FILE, json.dumps(log, indent=1).encode())


def _done_rounds(out: Path) -> list[dict[str, Any]]:
    """The rows of the rounds already saved under ``out`` (whose policy is complete)."""
    path = out / LOG_FILE
    if not path.is_file():
        return []
    try:
        log = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise SigmaUserError(f"{path}: not a DAgger log ({e}); remove it to start over") from e
    return [r for r in log if (_round_dir(out, r["round"]) / RNG_FILE).is_file()]


def estimator_dagger(
    base: str | Path,
    shards: str | Path,
    out: str | Path,
    rounds: int = 5,
    episodes: int = 100,
    steps: int = 1500,
    seed: int = 20_000,
    max_seconds: float = 10.0,
    log: Callable[[dict[str, Any]], None] | None = None,
    keep: Keep = "all",
) -> list[dict[str, Any]]:
    """Run (or resume) ``rounds`` rounds of estimator DAgger from the policy at ``base``.

    Args:
        base: a camera-only base (``model.scene_state: estimated``) saved by ``sigma train``.
        shards: its training shards: the demonstrations the refit keeps the action path
            on (train split), the statistics and the scene of the closed loop.
        out: where ``round_k/`` (a policy directory) and ``dagger.json`` go.
        rounds, episodes, steps: rounds in all, closed-loop episodes per round, refit
            steps per round (batch 16 demonstration windows + 16 visited states).
        seed: the first closed-loop seed; round ``k`` runs ``seed + k·episodes`` on.
        max_seconds: simulated seconds per episode.
        log: called with each round's row as it is saved.
        keep: the visited plans the refit learns from (:data:`KEEP`); with
            ``before-contact`` the row's ``closed_loop_named_mse`` is over those.

    Returns:
        One row per round: the closed loop's success rate, the estimate's error on the
        named cube's position there (before the refit, :func:`named_error`) and on the
        validation windows (after it), the aggregate's size and the seconds it took.

    Raises:
        SigmaUserError: a base that does not estimate its scene state, shards without the
            scene truth, bad counts, or a saved run whose replay differs.
    """
    for name, value in (("rounds", rounds), ("episodes", episodes), ("steps", steps)):
        if value < 1:
            raise SigmaUserError(f"{name} must be >= 1, got {value}")
    if keep not in KEEP:
        raise SigmaUserError(f"keep must be one of {', '.join(KEEP)}, got {keep!r}")

    def visit_kept(policy: SigmaPolicy, first_seed: int) -> tuple[VisitedStates, list]:
        visited, results = visit(policy, meta, episodes, first_seed, max_seconds)
        return (visited if keep == "all" else before_contact(visited, results)), results

    out, shards = Path(out), Path(shards)
    meta = read_meta(shards)  # a clear error for a missing or incomplete shard directory
    if not (Path(base) / "sigma.json").is_file():
        raise SigmaUserError(f"{base}: not a policy directory (no sigma.json)")
    saved = json.loads((Path(base) / "sigma.json").read_text())
    # the global generator (dropout) is seeded before the policy is built, whose
    # initialisation draws from it; a resumed run restores the saved state instead
    torch.manual_seed(saved["spec"]["train"]["seed"])
    policy = SigmaPolicy.from_pretrained(base).eval()
    dims, spec = policy.dims, policy.spec
    if spec.model.scene_state != "estimated":
        raise SigmaUserError(
            f"{base}: estimator DAgger needs a camera-only base (model.scene_state: estimated),"
            f" not {spec.model.scene_state!r}"
        )
    windows = {
        "frame_history": dims.frame_history,
        "environment_state": dims.scene_state_dim,
        "actions": spec.data.actions,
    }
    demonstrations = ShardDataset(str(shards), "train", **windows)
    val = ShardDataset(str(shards), "val", **windows)
    trained_on = saved.get("trained_on")
    settings = {"episodes": episodes, "steps": steps, "max_seconds": max_seconds, "keep": keep}
    done = _done_rounds(out)[:rounds]
    for row in done:  # a resumed run must be the same run
        wanted = settings | {
            "seeds": [seed + row["round"] * episodes, seed + (row["round"] + 1) * episodes - 1]
        }
        # rows saved before the option existed have no "keep": they kept every plan
        had = {k: row.get(k, "all" if k == "keep" else None) for k in wanted}
        changed = [f"{k} {had[k]} -> {v}" for k, v in wanted.items() if had[k] != v]
        if changed:
            raise SigmaUserError(
                f"{out / LOG_FILE}: round {row['round']} was made with other settings"
                f" ({', '.join(changed)}); use them again or another --out"
            )
    rows = list(done)
    if len(done) == rounds:  # nothing left to do
        return rows
    pool: VisitedStates | None = None
    for k in range(len(done)):  # rebuild the aggregate: replay the saved rounds' closed loops
        if k:
            policy = SigmaPolicy.from_pretrained(_round_dir(out, k - 1)).eval()
        visited, results = visit_kept(policy, seed + k * episodes)
        success = sum(r.success for r in results) / len(results)
        if success != done[k]["rollout_success"]:
            raise SigmaUserError(
                f"{out / LOG_FILE}: round {k}'s closed loop replays at {success:.0%}, saved"
                f" {done[k]['rollout_success']:.0%} (another machine or version?);"
                " remove the directory to start over"
            )
        pool = visited if pool is None else pool + visited
    if done:
        from safetensors.torch import load_file

        last = _round_dir(out, len(done) - 1)
        policy = SigmaPolicy.from_pretrained(last).eval()
        torch.set_rng_state(load_file(str(last / RNG_FILE))["torch"])
    for k in range(len(done), rounds):
        start = time.perf_counter()
        visited, results = visit_kept(policy, seed + k * episodes)
        pool = visited if pool is None else pool + visited
        row = {
            "round": k,
            "seeds": [seed + k * episodes, seed + (k + 1) * episodes - 1],
            **settings,
            "rollout_success": sum(r.success for r in results) / len(results),
            "closed_loop_named_mse": round(named_error(policy, visited), 4),
        }
        refit_estimator(policy, demonstrations, pool, steps, seed=k)
        row |= {
            "val_named_mse": None if (v := _val_error(policy, val)) is None else round(v, 4),
            "aggregate": len(pool),
            "seconds": round(time.perf_counter() - start, 1),
        }
        rows.append(row)
        _save_round(out, k, policy, trained_on, rows)
        if log is not None:
            log(row)
    return rows


def _val_error(policy: SigmaPolicy, val: ShardDataset, chunk: int = 128) -> float | None:
    """:func:`named_error` over every validation window of the shards (``None``: none)."""
    from sigma_core.data import collate

    if len(val) == 0:
        return None  # no validation episodes in these shards
    total = 0.0
    for i in range(0, len(val), chunk):
        batch = collate([val[j] for j in range(i, min(i + chunk, len(val)))])
        windows = VisitedStates(batch.images, batch.state, batch.environment_state.float())
        total += named_error(policy, windows) * len(windows)
    return total / len(val)
