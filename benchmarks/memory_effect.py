"""Does the trained semantic memory change the actions? Memory carried vs reset, per episode.

For every held-out episode, the policy replans every ``run_stride`` frames (the
stride it was trained with, as ``SigmaPolicy.step`` does) from frame 0 on:

* **carried**: ``m_{t-1}`` is the previous plan's ``m_t`` (the paper's memory);
* **reset** (the reference): ``m_{t-1} = m_0`` at every plan, the memory erased.

Printed: the mean TRAF ``L_act`` (normalized units, before the hard term) of both,
their ratio, the per-episode paired difference with a 95% bootstrap interval
over episodes (seeded), and how far the actions move: ``‖a_carried − a_reset‖ /
‖a_reset − a*‖`` (the change relative to the error).

    uv run python benchmarks/memory_effect.py runs/sigma-tiny/policy --data data/shards \
        [--split test] [--threads 1]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch


@torch.no_grad()
def stream(policy, ds, indices: list[int], carry: bool):  # type: ignore[no-untyped-def]
    """(per-window L_act, actions) of one episode, replanning at each window."""
    from sigma_core.data import collate
    from sigma_core.train.losses import traf

    m, losses, actions = None, [], []
    for i in indices:
        batch = collate([ds[i]])
        torch.manual_seed(0)  # the same sampler noise in both streams
        out = policy(batch, m if carry else None)
        m = out.intent.m_t
        losses.append(traf(out.actions, batch.targets, policy.spec.train.losses).l_act.item())
        actions.append((out.actions, batch.targets))
    return np.array(losses), actions


def bootstrap(diff: np.ndarray, seed: int = 0, n: int = 10_000) -> tuple[float, float]:
    """95% percentile interval of the mean of ``diff`` (resampling episodes)."""
    rng = np.random.default_rng(seed)
    means = rng.choice(diff, size=(n, len(diff)), replace=True).mean(1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("policy", type=Path, help="a saved policy (runs/<name>/policy)")
    ap.add_argument("--data", type=Path, required=True, help="preprocessed shards")
    ap.add_argument("--split", default="test", choices=["val", "test"])
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: see FACTS)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from sigma_core import SigmaPolicy
    from sigma_core.data import ShardDataset

    policy = SigmaPolicy.from_pretrained(args.policy).eval()
    stride = policy.spec.run_stride()
    ds = ShardDataset(args.data, split=args.split, frame_history=policy.dims.frame_history)
    episodes = ds.episode_runs(stride)
    carried, reset, moved = [], [], []
    for indices in episodes.values():
        lc, ac = stream(policy, ds, indices, carry=True)
        lr, ar = stream(policy, ds, indices, carry=False)
        carried.append(lc.mean())
        reset.append(lr.mean())
        pairs = zip(ac, ar, strict=True)
        change = sum((c.trajectory - r.trajectory).norm().item() for (c, _), (r, _) in pairs)
        error = sum((r.trajectory - t.trajectory).norm().item() for r, t in ar)
        moved.append(change / max(error, 1e-12))
    c, r = np.array(carried), np.array(reset)
    lo, hi = bootstrap(c - r)
    windows = sum(len(v) for v in episodes.values())
    print(f"{args.policy}: {args.split} split, {len(episodes)} episodes, {windows} plans,")
    print(f"replanning every {stride} frames; torch threads {args.threads}")
    print(f"L_act memory carried  {c.mean():.4f}")
    print(f"L_act memory reset    {r.mean():.4f}   (reference)")
    print(f"carried / reset       {c.mean() / r.mean():.3f}x")
    print(
        f"paired difference     {(c - r).mean():+.4f}  95% CI [{lo:+.4f}, {hi:+.4f}] over episodes"
    )
    print(f"trajectory change / trajectory error  {np.mean(moved):.3f}")


if __name__ == "__main__":
    main()
