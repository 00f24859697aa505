"""Estimator DAgger that refits only on the states before the arm touches the cube.

    python benchmarks/base_levers/dagger_before_contact.py BASE SHARDS OUT \
        [--rounds 3] [--episodes 100] [--seed 40000] [--moved 0.1]

``sigma dagger`` (:func:`sigma_sim.dagger.estimator_dagger`) refits the base's vision and
estimator on every planning step its closed loop visits. In the shipped base's failures
the arm knocks the cube away during the approach (``estimate_trace.py``), and the rest
of such an episode (about half of all visited steps) shows a pushed cube far from where
cubes start; the grasp, where success is lost, depends on the estimate before the first
touch. This runs the same DAgger with the aggregate restricted to each episode's plans
before the named cube first moves: its (x, y) more than ``--moved`` (squared, normalized
units) from where it was at the episode's second plan (the first after the cube settled).
Everything else (seeds, refit, resumption, the saved rounds) is ``sigma dagger``'s; a
diagnostic of what the refit should see, not a CLI option yet.
"""

from __future__ import annotations

import argparse
import math

import torch

import sigma_sim.dagger as dagger
from sigma_core.train.estimator import VisitedStates

_visit = dagger.visit


def before_contact(visited: VisitedStates, results: list, moved: float) -> VisitedStates:
    """The plans of each episode before its named cube first moved (episodes in order;
    episode i planned ceil(steps_i / n_action_steps_i) times)."""
    keep, start = [], 0
    for r in results:
        plans = math.ceil(r.steps / r.n_action_steps)
        xy = visited.truth[start : start + plans, :2]
        ref = xy[min(1, plans - 1)]
        for k in range(plans):
            if k > 1 and (xy[k] - ref).pow(2).sum() > moved:
                break
            keep.append(start + k)
        start += plans
    if start != len(visited):
        raise RuntimeError(f"{len(visited)} plans recorded, {start} counted from the results")
    idx = torch.tensor(keep)
    return VisitedStates(visited.images[idx], visited.state[idx], visited.truth[idx])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base")
    parser.add_argument("shards")
    parser.add_argument("out")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=40_000)
    parser.add_argument("--moved", type=float, default=0.1)
    args = parser.parse_args()
    torch.set_num_threads(1)

    def visit(*a, **k):
        visited, results = _visit(*a, **k)
        kept = before_contact(visited, results, args.moved)
        print(f"kept {len(kept)} of {len(visited)} visited plans (before contact)", flush=True)
        return kept, results

    dagger.visit = visit
    dagger.estimator_dagger(
        args.base,
        args.shards,
        args.out,
        rounds=args.rounds,
        episodes=args.episodes,
        steps=args.steps,
        seed=args.seed,
        log=print,
    )


if __name__ == "__main__":
    main()
