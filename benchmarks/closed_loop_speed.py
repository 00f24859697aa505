"""Closed-loop evaluation throughput (episodes per minute), against every-step rendering.

Runs the same episodes (same policy, seeds, settings) through
:func:`sigma_sim.rollout.rollout` three ways and prints episodes/minute and the
ratio to the reference:

* ``reference``: both cameras rendered on every control step, one process
  (``render_every_step=True, workers=1``: the closed loop before frames were
  rendered only when the policy reads them);
* ``render on read``: frames rendered only for replanning batches, one process;
* ``+ workers``: the same with ``--workers`` processes, run first so that they
  are forked as in ``sigma eval`` (start-up counted).

It also checks that all three give identical outcomes per seed (timing fields
aside). Episodes per CPU-minute (this process and its workers, user + system)
is printed too: on a machine shared with other jobs, wall-clock rates (and what
workers gain) depend on the load, CPU cost per episode much less. Torch is
pinned to ``--threads`` (default 1) in this process and to one thread in each
worker. An untrained policy never succeeds, so every episode runs its full
``--max-seconds``.

    uv run python benchmarks/closed_loop_speed.py [POLICY_DIR] [--config YAML] [--meta SHARDS]
        [--episodes 4] [--max-seconds 15] [--workers 2]

Without ``POLICY_DIR`` it builds ``--config``'s policy (default
configs/base-tiny.yaml, the quickstart-sized base: 96 px, two cameras, H_c = 8)
with random weights; statistics as in ``control_latency.py``.
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("MUJOCO_GL", "egl")  # before anything imports mujoco

import torch
from control_latency import load_meta

REPO = Path(__file__).resolve().parents[1]


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and its joined children (the workers)."""
    me, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def plain(result: Any) -> dict[str, Any]:
    return {k: v for k, v in result.as_dict().items() if k not in ("latencies", "sim_seconds")}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("policy_dir", nargs="?", type=Path, default=None)
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "base-tiny.yaml")
    parser.add_argument("--meta", type=Path, default=None, help="shard dir or its meta.json")
    parser.add_argument("--episodes", type=int, default=4)
    parser.add_argument("--max-seconds", type=float, default=15.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (this process)")
    parser.add_argument("--seed", type=int, default=10_000)
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    from sigma_core import SigmaPolicy, build_policy, load_spec
    from sigma_sim.rollout import rollout

    if args.policy_dir is None:
        torch.manual_seed(0)
        policy, source = build_policy(load_spec(args.config)).eval(), f"{args.config} (random)"
    else:
        policy, source = SigmaPolicy.from_pretrained(args.policy_dir).eval(), str(args.policy_dir)
    meta, meta_source = load_meta(args.meta, policy)
    common = {"max_seconds": args.max_seconds, "seed": args.seed}

    runs = {
        "reference (every step, 1 process)": {"render_every_step": True, "workers": 1},
        "render on read, 1 process": {"workers": 1},
        f"render on read, {args.workers} workers": {"workers": args.workers},
    }
    # The workers run first, as in `sigma eval` (this process has not rendered, so
    # they are forked, start-up counted); then a warm-up episode for the others.
    order = [*list(runs)[2:], "warm-up", *list(runs)[:2]]
    out: dict[str, Any] = {}
    results = {}
    for name in order:
        if name == "warm-up":
            rollout(policy, meta, 1, seed=args.seed + 1_000_000, max_seconds=0.5)
            continue
        t0, c0 = time.perf_counter(), cpu_seconds()
        results[name] = rollout(policy, meta, args.episodes, **common, **runs[name])
        wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
        out[name] = {
            "seconds": wall,
            "episodes_per_minute": args.episodes / wall * 60,
            "episodes_per_cpu_minute": args.episodes / cpu * 60,
        }
    out = {name: out[name] for name in runs}
    outcomes = [[plain(r) for r in rs] for rs in results.values()]
    identical = all(o == outcomes[0] for o in outcomes)

    dims = policy.dims
    first = results[next(iter(runs))]
    steps = sum(r.steps for r in first)
    print(
        f"torch pinned to {torch.get_num_threads()} thread(s) here, 1 per worker "
        f"({os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end), "
        f"MUJOCO_GL={os.environ.get('MUJOCO_GL')}"
    )
    print(f"policy: {source}; stats: {meta_source}")
    print(
        f"P={dims.image_size}, cameras={list(dims.cameras)}, F={dims.frame_history}, "
        f"n_action_steps={first[0].n_action_steps}; "
        f"{args.episodes} episodes x {args.max_seconds:g} s ({steps} control steps per run)"
    )
    ref = next(iter(out.values()))
    for name, row in out.items():
        row["ratio"] = row["episodes_per_minute"] / ref["episodes_per_minute"]
        row["cpu_ratio"] = row["episodes_per_cpu_minute"] / ref["episodes_per_cpu_minute"]
        print(
            f"{name:<36} {row['seconds']:7.1f} s  {row['episodes_per_minute']:7.1f} episodes/min"
            f"  x{row['ratio']:.2f}   {row['episodes_per_cpu_minute']:7.1f} per CPU-minute"
            f"  x{row['cpu_ratio']:.2f}"
        )
    print(f"outcomes identical per seed across the three runs: {identical}")
    if not identical:
        raise SystemExit("outcomes differ between the runs")
    return out


if __name__ == "__main__":
    main()
