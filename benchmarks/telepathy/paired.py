"""Paired difference of one closed-loop outcome between two policies of two reports.

    python benchmarks/telepathy/paired.py A_REPORT#POLICY B_REPORT#POLICY [--metric wrong_object]

Each report is a ``sigma eval --sim`` report.json; episodes are paired by seed (only
seeds both ran), and ``a - b`` of the per-episode outcome (``success``,
``wrong_object``, ``lifted``, ...; booleans as 0/1) is printed with a 95% percentile
bootstrap interval over seeds (10,000 resamples, seed 0), as ``sigma eval`` computes
``closed_loop_comparisons`` within one report. ``R1#P+R2#P`` pools a policy's episodes
from several reports (seed ranges evaluated separately). ``--blocks N`` also prints each
side's total over the paired seeds with its Wilson interval, and its totals per N
consecutive seeds.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def episodes(ref: str) -> dict[int, dict]:
    """Per seed episode record of ``REPORT#POLICY``, or of several joined by ``+`` (one
    policy evaluated on several seed ranges: their episodes pooled)."""
    pooled: dict[int, dict] = {}
    for part in ref.split("+"):
        path, _, policy = part.partition("#")
        loop = json.loads(Path(path).read_text())["closed_loop"]
        pooled |= {int(e["seed"]): e for e in loop[policy or next(iter(loop))]["episodes_detail"]}
    return pooled


def outcomes(ref: str, metric: str) -> dict[int, float]:
    """Per seed ``metric`` of :func:`episodes` (booleans as 0/1)."""
    return {seed: float(e[metric]) for seed, e in episodes(ref).items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a")
    parser.add_argument("b")
    parser.add_argument("--metric", default="wrong_object")
    parser.add_argument("--blocks", type=int, default=0, help="Also totals per N seeds.")
    args = parser.parse_args()
    a, b = outcomes(args.a, args.metric), outcomes(args.b, args.metric)
    seeds = sorted(set(a) & set(b))
    diff = np.array([a[s] - b[s] for s in seeds])
    rng = np.random.default_rng(0)
    boot = diff[rng.integers(0, len(diff), (10_000, len(diff)))].mean(axis=1)
    low, high = np.percentile(boot, [2.5, 97.5])
    mean_a, mean_b = np.mean([a[s] for s in seeds]), np.mean([b[s] for s in seeds])
    print(
        f"{args.metric}: a {mean_a:.2f}, b {mean_b:.2f},"
        f" a - b {diff.mean():+.2f} [{low:+.2f}, {high:+.2f}] over {len(seeds)} seeds"
    )
    if args.blocks:
        from sigma_core.eval import wilson

        for name, side in (("a", a), ("b", b)):
            total = round(sum(side[s] for s in seeds))
            rate = wilson(total, len(seeds))
            starts = range(seeds[0], seeds[-1] + 1, args.blocks)
            per = [round(sum(side.get(s, 0) for s in range(k, k + args.blocks))) for k in starts]
            print(
                f"{name}: {total} of {len(seeds)}, {rate.estimate:.1%} [{rate.low:.1%},"
                f" {rate.high:.1%}]; per {args.blocks} seeds from {seeds[0]}: {per}"
            )


if __name__ == "__main__":
    main()
