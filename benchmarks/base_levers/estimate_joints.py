"""How much a camera-only base's scene estimate follows the joints rather than the images.

    python benchmarks/base_levers/estimate_joints.py BASE_POLICY_DIR SHARDS [--split test]

The first pass of ``model.scene_state: estimated`` encodes the cameras with the joints
``state`` (``SigmaPolicy.estimate_scene``). In demonstrations the arm goes to the cube, so
the joints alone predict where the cube is; in closed loop they report where the
policy's arm went. This prints, over the split's demonstration frames (every 4th), the
named cube's and the goal's (x, y) normalized MSE of ``s_hat`` with the true joints, with
the joints at their mean (0), with the joints of another frame of the split (shuffled:
the images and joints then disagree), and with Gaussian noise of 0.3 std on the five arm
joints; and how far ``s_hat`` moves from its own value under each (mean squared change):
if the estimate moves with the joints more than its error, it copies the arm. One
torch thread.
"""

from __future__ import annotations

import argparse

import torch
from probe_dims import load_policy

from sigma_core.data import ENVIRONMENT_STATE, ShardDataset, collate, read_meta

XY = {"cube": [0, 1], "goal": [5, 6]}  # sigma_sim.scene.environment_state's layout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base")
    parser.add_argument("shards")
    parser.add_argument("--split", default="test")
    parser.add_argument("--every", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(1)
    policy = load_policy(args.base)
    width = len(read_meta(args.shards)["stats"][ENVIRONMENT_STATE]["mean"])
    ds = ShardDataset(args.shards, args.split, environment_state=width, verify=False)
    g = torch.Generator().manual_seed(0)
    rows: dict[str, list[torch.Tensor]] = {}
    truths: list[torch.Tensor] = []
    with torch.no_grad():
        for start in range(0, len(ds), 64 * args.every):
            stop = min(len(ds), start + 64 * args.every)
            batch = collate([ds[i] for i in range(start, stop, args.every)])
            joints = batch.state
            noise = torch.zeros_like(joints)
            noise[:, :5] = 0.3 * torch.randn(joints[:, :5].shape, generator=g)
            variants = {
                "true joints": joints,
                "joints at mean": torch.zeros_like(joints),
                "joints of another frame": joints[torch.randperm(len(joints), generator=g)],
                "arm joints + 0.3 std": joints + noise,
            }
            for name, state in variants.items():
                rows.setdefault(name, []).append(policy.estimate_scene(batch.images, state)[1])
            truths.append(batch.environment_state)
    truth = torch.cat(truths)
    own = torch.cat(rows["true joints"])
    print(f"{len(truth)} frames of {args.split}")
    for name, parts in rows.items():
        s = torch.cat(parts)
        cells = []
        for what, idx in XY.items():
            err = (s[:, idx] - truth[:, idx]).pow(2).sum(1).mean()
            moved = (s[:, idx] - own[:, idx]).pow(2).sum(1).mean()
            cells.append(f"{what} error {err:.3f} moved {moved:.3f}")
        print(f"{name:>24}: " + "; ".join(cells))


if __name__ == "__main__":
    main()
