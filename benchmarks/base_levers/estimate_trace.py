"""Where a camera-only base's scene estimate is wrong in closed loop, and what a filter would fix.

    python benchmarks/base_levers/estimate_trace.py BASE_POLICY_DIR SHARDS OUT \
        [--episodes 50] [--seed 10000] [--goal-ema A] [--cube-ema A]
    python benchmarks/base_levers/estimate_trace.py --analyse OUT/trace.jsonl

The base (``model.scene_state: estimated``) runs its closed loop as ``sigma eval --sim``
does, one process, and at every plan this records its estimate ``s_hat`` of the named
cube's and the goal's position, the simulator's truth (both normalized, as the policy
reads them) and the joints: ``OUT/trace.jsonl``, one line per plan, and
``OUT/report.json`` (policy ``estimate``, or ``filtered`` with a filter), which
``paired.py`` pairs by seed.

The goal disc never moves and the cube does not move until it is grasped, so an
estimate can be averaged over the plans of an episode. ``--goal-ema A`` acts on
``g_t = A s_hat_t + (1 - A) g_{t-1}`` for the goal's entries (``g_0 = s_hat_0``);
``--cube-ema A`` does the same for the named cube's while the gripper is open (joint 6
above ``--open``, the demonstrations' open value), and passes ``s_hat`` through once
it closes (the cube then moves with the gripper). The truth is read only to record the
error: a diagnostic, never a policy input.

``--analyse`` prints, from a trace, the estimate's error by phase (the gripper open or
closed; plans 0-3, 4-7, 8+) and by outcome, and the error the EMA filters would have
had on the same plans (the trajectory held fixed: an offline proxy, which the
closed-loop run then tests). One torch thread.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import defaultdict
from pathlib import Path

import torch
from estimated_oracle import closed_loop, closed_loop_parser, write_report
from torch import Tensor
from truth_oracle import handed_the_truth

from sigma_core import SigmaPolicy
from sigma_core.types import SigmaBatch, VisionOutput

CUBE, GOAL = (0, 1, 2), (5, 6, 7)  # sigma_sim.scene.environment_state's layout
GRIPPER = 5  # the joint state's last entry (normalized)
OPENED, CLOSED = 0.5, 0.0  # normalized gripper: jaws opened for the approach / closed again
MOVED = 0.1  # squared normalized (x, y) distance from its place at plan 1: the cube moved


class Traced(SigmaPolicy):
    """The base on its own (optionally filtered) estimate, tracing it against the truth."""

    trace: list[dict]
    goal_ema: float
    cube_ema: float
    open_above: float
    _plan: int
    _episode: int
    _filtered: Tensor

    def encode_vision(self, batch: SigmaBatch) -> tuple[VisionOutput, Tensor, Tensor]:
        vis, s_hat = self.estimate_scene(batch.images, batch.state)
        truth = batch.environment_state.to(s_hat.dtype)
        new = self._memory is None  # reset() clears the memory: a new episode
        self._plan = 0 if new else self._plan + 1
        self._episode = (self._episode + 1) if new else self._episode
        act = s_hat.clone()
        if new:
            self._filtered = s_hat.clone()
        else:
            goal, cube = list(GOAL), list(CUBE)
            a = self.goal_ema
            self._filtered[:, goal] = a * s_hat[:, goal] + (1 - a) * self._filtered[:, goal]
            open_ = batch.state[0, GRIPPER].item() > self.open_above
            a = self.cube_ema if open_ else 1.0
            self._filtered[:, cube] = a * s_hat[:, cube] + (1 - a) * self._filtered[:, cube]
        act[:, list(GOAL)] = self._filtered[:, list(GOAL)]
        act[:, list(CUBE)] = self._filtered[:, list(CUBE)]
        self.trace.append(
            {
                "episode": self._episode,
                "plan": self._plan,
                "s_hat": [round(v, 5) for v in s_hat[0].tolist()],
                "acted": [round(v, 5) for v in act[0].tolist()],
                "truth": [round(v, 5) for v in truth[0].tolist()],
                "joints": [round(v, 5) for v in batch.state[0].tolist()],
            }
        )
        state = self._with_scene(batch.state, act)
        return self.vision.restate(vis, batch.images, state), state, s_hat


def _mse(a: list[float], b: list[float], idx: tuple[int, ...]) -> float:
    return sum((a[i] - b[i]) ** 2 for i in idx) / len(idx)


def analyse(path: Path, report: Path | None, open_above: float) -> None:
    """Print the estimate's error by phase and outcome, and the offline EMA proxies."""
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    outcome: dict[int, dict] = {}
    if report is not None and report.exists():
        (policy,) = json.loads(report.read_text())["closed_loop"].values()
        outcome = {i + 1: e for i, e in enumerate(policy["episodes_detail"])}
    groups: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for r in rows:
        phase = "open" if r["joints"][GRIPPER] > open_above else "closed"
        when = "plans 0-3" if r["plan"] < 4 else "plans 4-7" if r["plan"] < 8 else "plans 8+"
        ok = (
            "?"
            if r["episode"] not in outcome
            else "success"
            if outcome[r["episode"]]["success"]
            else "failure"
        )
        err = (_mse(r["s_hat"], r["truth"], CUBE[:2]), _mse(r["s_hat"], r["truth"], GOAL[:2]))
        for key in ("all", phase, when, f"{phase}, {ok}", f"{when}, {phase}"):
            groups[key].append(err)
    print("estimate's normalized MSE (cube x,y | goal x,y), mean over plans:")
    for key in sorted(groups):
        v = groups[key]
        cube = sum(e[0] for e in v) / len(v)
        goal = sum(e[1] for e in v) / len(v)
        print(f"  {key:28s} plans {len(v):5d}  cube {cube:.3f}  goal {goal:.3f}")
    contact(rows, outcome)
    print("offline EMA proxies on the same plans (open-gripper plans only for the cube):")
    by_episode: dict[int, list[dict]] = defaultdict(list)
    for r in rows:
        by_episode[r["episode"]].append(r)
    for a in (1.0, 0.7, 0.5, 0.3, 0.2, 0.1):
        cube_err, goal_err, n_cube, n_goal = 0.0, 0.0, 0, 0
        for plans in by_episode.values():
            f = list(plans[0]["s_hat"])
            for k, r in enumerate(plans):
                if k:
                    f = [a * s + (1 - a) * p for s, p in zip(r["s_hat"], f, strict=True)]
                goal_err += _mse(f, r["truth"], GOAL[:2])
                n_goal += 1
                if r["joints"][GRIPPER] > open_above:
                    cube_err += _mse(f, r["truth"], CUBE[:2])
                    n_cube += 1
        cube, goal = cube_err / max(n_cube, 1), goal_err / n_goal
        print(f"  A {a:.1f}: cube (open) {cube:.3f}  goal {goal:.3f}")


def contact(rows: list[dict], outcome: dict[int, dict]) -> None:
    """Per outcome: the cube's (x, y) error at the plan before the cube first moved, how
    many episodes moved it before their jaws closed again and at which plan, and the error
    at the last open-gripper plan; then the truth-on-estimate slope over plans 1-7."""
    by_episode: dict[int, list[dict]] = defaultdict(list)
    for r in rows:
        by_episode[r["episode"]].append(r)
    groups: dict[str, list[tuple]] = defaultdict(list)
    for e, plans in by_episode.items():
        if e not in outcome:
            continue
        o = outcome[e]
        kind = "success" if o["success"] else "grasped, failed" if o["grasped"] else "no grasp"
        ref = plans[min(1, len(plans) - 1)]["truth"]
        moved = next(
            (
                k
                for k, p in enumerate(plans)
                if k > 1 and _mse(p["truth"], ref, CUBE[:2]) * 2 > MOVED
            ),
            None,
        )
        g = [p["joints"][GRIPPER] for p in plans]
        opened = next((k for k, v in enumerate(g) if v > OPENED), None)
        closed = (
            None
            if opened is None
            else next((k for k in range(opened, len(g)) if g[k] < CLOSED), None)
        )
        before = (
            None
            if not moved
            else 2 * _mse(plans[moved - 1]["s_hat"], plans[moved - 1]["truth"], CUBE[:2])
        )
        last_open = (
            None
            if not closed
            else 2 * _mse(plans[closed - 1]["s_hat"], plans[closed - 1]["truth"], CUBE[:2])
        )
        groups[kind].append((moved, closed, before, last_open))
    print("by outcome, cube (x, y) squared error (normalized):")
    for kind, v in groups.items():

        def mean(xs: list) -> str:
            xs = [x for x in xs if x is not None]
            return f"{sum(xs) / len(xs):.2f}" if xs else "-"

        early = sum(1 for m, c, _, _ in v if m is not None and c is not None and m < c)
        moved = [x[0] for x in v]
        print(f"  {kind:16s} n {len(v):3d}  before it moved {mean([x[2] for x in v])}")
        print(f"  {'':16s} moved {sum(m is not None for m in moved)}, at plan {mean(moved)};"
              f" before the jaws closed {early}; closed at {mean([x[1] for x in v])};"
              f" last open plan {mean([x[3] for x in v])}")  # fmt: skip
    for i, name in ((0, "cube.x"), (1, "cube.y")):
        pairs = [(p["s_hat"][i], p["truth"][i]) for ps in by_episode.values() for p in ps[1:8]]
        n = len(pairs)
        ms, mt = sum(a for a, _ in pairs) / n, sum(b for _, b in pairs) / n
        slope = sum((a - ms) * (b - mt) for a, b in pairs) / sum((a - ms) ** 2 for a, _ in pairs)
        mse = sum((a - b) ** 2 for a, b in pairs) / n
        print(f"  plans 1-7, {name}: MSE {mse:.3f}, slope of truth on estimate {slope:.2f}")


def main() -> None:
    if "--analyse" in sys.argv:
        p = argparse.ArgumentParser()
        p.add_argument("--analyse", type=Path, required=True)
        p.add_argument("--open", type=float, default=0.0)
        a = p.parse_args()
        analyse(a.analyse, a.analyse.parent / "report.json", a.open)
        return
    parser = closed_loop_parser(__doc__, "base")
    parser.add_argument("--goal-ema", type=float, default=1.0)
    parser.add_argument("--cube-ema", type=float, default=1.0)
    parser.add_argument("--open", type=float, default=0.0, help="gripper joint (normalized)")
    args = parser.parse_args()
    args.workers = 1  # the trace is kept in this process
    torch.set_num_threads(1)
    meta = json.loads((Path(args.shards) / "meta.json").read_text())
    with handed_the_truth(SigmaPolicy.from_pretrained(args.base), Traced) as policy:
        policy.trace, policy._episode = [], 0
        policy.goal_ema, policy.cube_ema, policy.open_above = (
            args.goal_ema,
            args.cube_ema,
            args.open,
        )
        results = closed_loop(policy, meta, args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "trace.jsonl.tmp"
    tmp.write_text("".join(json.dumps(r) + "\n" for r in policy.trace))
    os.replace(tmp, out / "trace.jsonl")
    filtered = args.goal_ema < 1 or args.cube_ema < 1
    write_report(out, "filtered" if filtered else "estimate", results, vars(args))
    analyse(out / "trace.jsonl", out / "report.json", args.open)


if __name__ == "__main__":
    main()
