"""How far is a decluttered tau pass from the base's view, state by state? (issue 21)

    python benchmarks/telepathy/declutter_error.py POLICY VISITS [VISITS ...] [--chunk 64]

POLICY is a Sigma policy with ``vision.tau_stem`` (after ``sigma declutter`` or before);
each VISITS is a ``visited.safetensors`` / ``visited-also.safetensors`` that ``sigma
declutter`` wrote (its states, uncluttered renders, memory and instructions). Prints, per
file, ``L_declutter``'s two terms averaged over every state (no training, one torch
thread): the tokens' and the scene estimate's squared error of the tau pass on the
cluttered images against the frozen base on the uncluttered ones. On one-cube scenes
(``--also`` visits) the target is the base's view of the image itself, so this is how
much the tau pass changes a scene with nothing to remove.
"""

from __future__ import annotations

import argparse
import json

import torch

from sigma_core import SigmaPolicy
from sigma_core.train.declutter import ClutteredStates, declutter_loss, declutter_targets


def load(path: str) -> ClutteredStates:
    from safetensors import safe_open

    with safe_open(path, framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open)
        texts = json.loads((f.metadata() or {})["texts"])
    return ClutteredStates(texts=texts, **tensors)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("policy")
    parser.add_argument("visits", nargs="+")
    parser.add_argument("--chunk", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(1)
    policy = SigmaPolicy.from_pretrained(args.policy).eval().requires_grad_(False)
    for path in args.visits:
        states = load(path)
        tokens, scene, taus = declutter_targets(policy, states)
        sums: dict[str, float] = {}
        with torch.no_grad():
            for i in range(0, len(states), args.chunk):
                idx = torch.arange(i, min(i + args.chunk, len(states)))
                target = None if scene is None else scene[idx]
                _, parts = declutter_loss(policy, states.batch(idx), taus[idx], tokens[idx], target)
                for k, v in parts.items():
                    sums[k] = sums.get(k, 0.0) + v * len(idx)
        row = {k: round(v / len(states), 5) for k, v in sums.items()}
        print(json.dumps({"policy": args.policy, "visits": path, "states": len(states)} | row))


if __name__ == "__main__":
    main()
