"""Upper bound of a scene-estimate correction: the frozen base acting on the true scene state.

    python benchmarks/telepathy/truth_oracle.py BASE_POLICY_DIR SHARDS OUT.json \
        [--episodes 50] [--seed 10000] [--entries all|named|none] [--workers 2]

A camera-only base (``model.scene_state: estimated``) acts on its own estimate
``s_hat`` of the named cube's and the goal's position. In the transfer scenes
(distractor cubes) that estimate is confused between cubes, so the arm goes for the
wrong one. This script asks what a perfect correction of ``s_hat`` would buy: it runs
the base's closed loop with ``s_hat`` replaced, on every planning step, by the
simulator's true (normalized) scene state in the estimated entries
(``train.losses.state_weights`` > 0): ``--entries all`` replaces the named cube and the
goal, ``--entries named`` the named cube only (the goal stays the base's estimate).
``--entries none`` acts on the estimate as the policy does and records its error on the
named cube's (x, y) at every planning step, by plan index (one process: ``--workers
1``). A base trained with ``train.teacher_forcing`` > 0 read the truth in training, so
this is in distribution for it. The privileged state is read at inference
here: a diagnostic, never a policy. Episodes are seeded as in ``sigma eval --sim``
(``--seed`` + i, the scene of SHARDS' recording) so outcomes pair with its reports.
The output is laid out as a ``sigma eval`` report (``closed_loop.truth-ENTRIES``), so
``paired.py OUT.json REPORT#POLICY`` pairs it by seed. One torch thread per process.
"""

from __future__ import annotations

import argparse
import json
import time
import types
from pathlib import Path

import torch

from sigma_core import SigmaPolicy
from sigma_core.types import SigmaBatch, VisionOutput

NAMED = (0, 1, 2)  # cube.x, cube.y, cube.z in sigma_sim.scene.environment_state


#: (plan index in the episode, squared error of s_hat's named-cube x, y) per planning
#: step, filled by ``--entries none`` (one process)
ERRORS: list[tuple[int, float, float]] = []


def _truth_encode(entries: str):
    plans = {"n": 0}

    def encode_vision(
        self: SigmaPolicy, batch: SigmaBatch
    ) -> tuple[VisionOutput, torch.Tensor, torch.Tensor]:
        vis, s_hat = self.estimate_scene(batch.images, batch.state)
        truth = batch.environment_state.to(s_hat.dtype)
        weights = torch.tensor([w > 0 for w in self.spec.train.losses.state_weights])
        take = weights.clone()
        if entries == "none":  # act on the estimate; record its error as the loop runs
            if self._memory is None:  # the episode's first plan (policy.reset clears it)
                plans["n"] = 0
            e = (s_hat[0, :2] - truth[0, :2]).pow(2)
            ERRORS.append((plans["n"], e[0].item(), e[1].item()))
            plans["n"] += 1
            take[:] = False
        elif entries == "named":
            take[:] = False
            take[list(NAMED)] = True
        scene = torch.where(take, truth, s_hat) * weights
        state = torch.cat([batch.state, scene.to(batch.state.dtype)], dim=-1)
        return self.vision.restate(vis, batch.images, state), state, s_hat

    return encode_vision


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base")
    parser.add_argument("shards")
    parser.add_argument("out")
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--seed", type=int, default=10_000)
    parser.add_argument("--max-seconds", type=float, default=10.0)
    parser.add_argument("--entries", choices=("named", "all", "none"), default="all")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)

    from sigma_sim.rollout import rollout

    policy = SigmaPolicy.from_pretrained(args.base)
    if policy.spec.model.scene_state != "estimated":
        raise SystemExit(f"{args.base}: not a camera-only base (model.scene_state: estimated)")
    # the closed loop then hands the policy observation.environment_state (normalized)
    policy.spec.model.scene_state = "observed"
    policy.encode_vision = types.MethodType(_truth_encode(args.entries), policy)
    meta = json.loads((Path(args.shards) / "meta.json").read_text())
    start = time.perf_counter()
    results = rollout(
        policy,
        meta,
        args.episodes,
        seed=args.seed,
        max_seconds=args.max_seconds,
        workers=args.workers,
    )
    rows = [r.as_dict() for r in results]
    n = len(rows)
    summary = {
        "base": args.base,
        "entries": args.entries,
        "episodes": n,
        "seed": args.seed,
        "success": sum(r["success"] for r in rows) / n,
        "wrong_object": sum(bool(r.get("wrong_object")) for r in rows) / n,
        "seconds": round(time.perf_counter() - start, 1),
    }
    if ERRORS:  # the estimate's error along the episodes, by plan index
        by_plan: dict[str, list[float]] = {}
        for i, ex, ey in ERRORS:
            key = f"{8 * (i // 8)}-{8 * (i // 8) + 7}"
            by_plan.setdefault(key, []).append((ex + ey) / 2)
        summary["estimate_mse_by_plan"] = {
            k: {"mse": round(sum(v) / len(v), 4), "plans": len(v)} for k, v in by_plan.items()
        }
    # sigma eval's report layout, so that paired.py pairs it with any report by seed
    report = summary | {"closed_loop": {f"truth-{args.entries}": {"episodes_detail": rows}}}
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
