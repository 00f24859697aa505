"""Ceiling of a pathway that makes the base *not see* the distractors (issue 21).

    python benchmarks/telepathy/unseen_distractors.py POLICY_DIR SHARDS OUT \
        [--episodes 50] [--seed 10000] [--max-seconds 10] [--workers 2] [--visible]

SHARDS: transfer scenes (the quickstart's shards-transfer: distractor cubes of other
colours beside the named cube). The policy runs closed-loop in those scenes with the
distractor cubes' geoms drawn fully transparent (``geom_rgba`` alpha 0): they are still
on the table and still collide, and touching one still counts as the wrong object, but
neither camera shows them. A base trained on one-cube scenes then sees the scene it
was trained on. Against the same policy with the distractors visible (``--visible``, or
``sigma eval``'s transfer report on the same seeds), this is the most a telepathy
pathway could buy by suppressing what the instruction did not name, before the base's
own vision: the oracle of a tau-gated vision. Compare it with ``truth_oracle.py
--entries named``, the ceiling of correcting the base's scene *estimate* instead.

A diagnostic, never a policy: the simulator is changed, not the policy. Episodes are
seeded as in ``sigma eval --sim`` (``--seed`` + i); one torch thread per process.
Writes ``OUT/report.json`` (``estimated_oracle.write_report``, policy ``unseen`` or
``visible``), so ``paired.py`` pairs it by seed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).parents[1] / "base_levers"))
from estimated_oracle import closed_loop, closed_loop_parser, write_report

from sigma_core import SigmaPolicy
from sigma_core.eval.replay import open_source
from sigma_sim.scene import hide_distractors


def main() -> None:
    parser = closed_loop_parser(__doc__, "policy")
    parser.add_argument("--visible", action="store_true", help="the control: nothing hidden")
    args = parser.parse_args()
    torch.set_num_threads(1)

    import sigma_sim.scene

    if not args.visible:
        original = sigma_sim.scene.reset_episode

        def reset_unseen(env: Any, seed: int, colors: list[str]) -> Any:
            if not hide_distractors(env):
                raise SystemExit(f"{args.shards}: the scene has no distractor cubes to hide")
            return original(env, seed, colors)  # renders the first frame without them

        # the rollout imports reset_episode per episode, after the workers fork from here
        sigma_sim.scene.reset_episode = reset_unseen
    meta = json.loads((Path(args.shards) / "meta.json").read_text())
    policy = SigmaPolicy.from_pretrained(open_source(args.policy).directory)
    results = closed_loop(policy, meta, args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_report(out, "visible" if args.visible else "unseen", results, vars(args))


if __name__ == "__main__":
    main()
