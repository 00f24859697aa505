"""Where the distractors of a transfer recording lie: off the goal and clear of the cube?

    python benchmarks/telepathy/scene_geometry.py SHARDS [--episodes 50] [--seed 10000]
        [--layout recorded|clear|legacy] [--distractors K] [--reports OUT1/report.json ...]

Resets the simulator in the closed-loop evaluation's scenes of SHARDS (seeds ``--seed``
+ i, as ``sigma eval --sim``; the recording's settings, ``--layout`` overriding
``clear_distractors``) and prints, over the episodes, the distance of the nearest
distractor cube to the goal disc's centre and to the named cube, measured after the
reset's settling (cm: min, median, fraction under 3 and 5 cm). The goal disc's radius
is 5 cm; so101-nexus asks for 3.75 cm plus a cube's bounding radius (about 5.5 cm) from
its centre and 4 cm plus both radii (about 7.5 cm) between cubes. With ``--reports``
(closed-loop reports of these seeds: ``sigma eval``, ``truth_oracle.py``,
``unseen_distractors.py``), each policy's successes per bin of the distractor-goal
distance. Also the fraction of scenes whose every distractor lies 6.5 cm from the goal's
centre and 5 cm from the named cube: ``--layout legacy --seed 20000 --episodes 300``
measures how often so101-nexus' own draws leave room (``--distractors 1``: with one).
One process, no torch.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

#: A distractor counted clear of the goal (its centre, m) and of the named cube.
CLEAR_GOAL, CLEAR_CUBE = 0.065, 0.05


def nearest_distractors(
    shards: str, episodes: int, seed: int, layout: str, distractors: int | None = None
) -> list[dict]:
    """Per episode: its seed and the nearest distractor's distance to goal and cube (m)."""
    from sigma_sim.rollout import eval_env_seed, scene_config
    from sigma_sim.scene import environment_state, make_env, reset_episode

    meta = json.loads((Path(shards) / "meta.json").read_text())
    cfg = scene_config(meta, distractors=distractors, image_size=32, fps=30)
    if layout != "recorded":
        cfg = cfg.model_copy(update={"clear_distractors": layout == "clear"})
    if not cfg.distractors:
        raise SystemExit(f"{shards}: the recording has no distractors")
    env, colors = make_env(cfg), list(cfg.cube_colors)
    rows = []
    try:
        for i in range(episodes):
            _, _, ep = reset_episode(env, eval_env_seed(seed + i, 0), colors)
            s = environment_state(env, colors)
            present = [
                s[8 + 4 * k : 10 + 4 * k]
                for k, c in enumerate(colors)
                if c != ep.cube_color and s[8 + 4 * k + 3] > 0
            ]
            rows.append(
                {
                    "seed": seed + i,
                    "goal": min(math.dist(xy, s[5:7]) for xy in present),
                    "cube": min(math.dist(xy, s[:2]) for xy in present),
                }
            )
    finally:
        env.close()
    return rows


def describe(values: list[float]) -> str:
    cm = 100 * np.asarray(values)
    return (
        f"min {cm.min():.1f}, median {np.median(cm):.1f}, "
        f"under 3 cm {np.mean(cm < 3):.0%}, under 5 cm {np.mean(cm < 5):.0%}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("shards")
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--seed", type=int, default=10_000)
    parser.add_argument("--layout", choices=("recorded", "clear", "legacy"), default="recorded")
    parser.add_argument("--distractors", type=int, help="override the recording's count")
    parser.add_argument("--reports", nargs="*", default=[])
    args = parser.parse_args()
    rows = nearest_distractors(args.shards, args.episodes, args.seed, args.layout, args.distractors)
    print(f"nearest distractor to the goal's centre (cm): {describe([r['goal'] for r in rows])}")
    print(f"nearest distractor to the named cube (cm):    {describe([r['cube'] for r in rows])}")
    clear = sum(r["goal"] >= CLEAR_GOAL and r["cube"] >= CLEAR_CUBE for r in rows) / len(rows)
    print(
        f"scenes with every distractor {100 * CLEAR_GOAL:g} cm from the goal's centre and "
        f"{100 * CLEAR_CUBE:g} cm from the cube: {clear:.1%}"
    )
    bins = [(0.0, 0.03), (0.03, 0.06), (0.06, math.inf)]
    for path in args.reports:
        report = json.loads(Path(path).read_text())
        for name, loop in report["closed_loop"].items():
            success = {e["seed"]: e["success"] for e in loop["episodes_detail"]}
            cells = []
            for lo, hi in bins:
                seeds = [r["seed"] for r in rows if lo <= r["goal"] < hi and r["seed"] in success]
                wins = sum(success[s] for s in seeds)
                cells.append(f"{100 * lo:.0f}-{100 * hi:.0f} cm: {wins}/{len(seeds)}")
            print(f"{path} {name}: success by distractor-goal distance: " + ", ".join(cells))


if __name__ == "__main__":
    main()
