"""Closed-loop control latency of a Sigma policy in the SO-101 simulator, against 30 Hz.

Runs simulated control steps through :func:`sigma_sim.rollout.rollout` (render
both cameras, preprocess, ``policy.step``, convert, ``env.step``) and prints the
``policy.step`` latency over all control steps (replanning steps included), over
the replanning steps alone (the ones that run the model; the others pop a queued
action), the ratio p99 / control period (33.3 ms at 30 Hz), and the simulator's
own time per step (physics + rendering both cameras, and rendering alone) for
reference. Torch is pinned to one thread (``--threads``) so the figure does not
depend on the machine's core count; a short warm-up episode is not counted.

    uv run python benchmarks/control_latency.py [POLICY_DIR] [--meta SHARDS] [--steps 300]

Without ``POLICY_DIR`` it builds configs/default.yaml's policy (random init) at
its dims. Normalization statistics come from ``--meta`` (a shard directory or
its meta.json), else from the policy's ``data.path`` when it exists, else
neutral ones (mean 0, std 1; an untrained policy's latency does not depend on
them). An untrained policy never succeeds, so every episode runs its full length.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("MUJOCO_GL", "egl")  # before anything imports mujoco

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]


def load_policy(policy_dir: Path | None, device: str) -> tuple[Any, str]:
    from sigma_core import SigmaPolicy, build_policy, load_spec

    if policy_dir is None:
        path = REPO / "configs" / "default.yaml"
        return build_policy(load_spec(path)).to(device).eval(), f"{path} (random init)"
    return SigmaPolicy.from_pretrained(policy_dir).to(device).eval(), str(policy_dir)


def neutral_meta(dims: Any, fps: int = 30) -> dict[str, Any]:
    """A meta.json stand-in with mean-0 / std-1 statistics at the policy's dims."""
    zero = {"mean": [0.0] * dims.action_dim, "std": [1.0] * dims.action_dim}
    return {
        "options": {
            "cameras": list(dims.cameras),
            "image_size": dims.image_size,
            "horizon": dims.horizon,
            "chunk": dims.chunk_horizon,
        },
        "stats": {
            "action": zero,
            "observation.state": {"mean": [0.0] * dims.state_dim, "std": [1.0] * dims.state_dim},
        },
        "source": {
            "fps": fps,
            "cameras": {c: f"observation.images.{c}" for c in dims.cameras},
        },
    }


def load_meta(arg: Path | None, policy: Any) -> tuple[dict[str, Any], str]:
    candidates = [arg] if arg else []
    if not arg and policy.spec.data.path:
        candidates.append(Path(policy.spec.data.path))
    for path in candidates:
        file = path / "meta.json" if path.is_dir() else path
        if file.is_file():
            return json.loads(file.read_text()), str(file)
        if arg:
            raise SystemExit(f"{arg}: no meta.json")
    return neutral_meta(policy.dims), "neutral statistics (mean 0, std 1)"


def render_only_ms(meta: dict[str, Any], repeats: int = 50) -> float | None:
    """Wall ms of rendering both cameras once (so101_nexus ``_get_obs``), no physics."""
    from sigma_sim.config import So101PickPlaceConfig
    from sigma_sim.rollout import eval_env_seed
    from sigma_sim.scene import make_env, reset_episode

    cfg = So101PickPlaceConfig(image_size=meta["options"]["image_size"])
    env = make_env(cfg)
    try:
        reset_episode(env, eval_env_seed(0, 0), list(cfg.cube_colors))
        get_obs = getattr(env, "_get_obs", None)
        if get_obs is None:
            return None
        get_obs()
        t0 = time.perf_counter()
        for _ in range(repeats):
            get_obs()
        return (time.perf_counter() - t0) / repeats * 1000
    finally:
        env.close()


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000, q))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("policy_dir", nargs="?", type=Path, default=None)
    parser.add_argument("--meta", type=Path, default=None, help="shard dir or its meta.json")
    parser.add_argument("--steps", type=int, default=300, help="control steps to time")
    parser.add_argument("--episodes", type=int, default=2, help="split the steps over these")
    parser.add_argument("--n-action-steps", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=10_000)
    parser.add_argument("--json", action="store_true", help="also print the figures as JSON")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    from sigma_sim.rollout import rollout

    t0 = time.perf_counter()
    policy, source = load_policy(args.policy_dir, args.device)
    meta, meta_source = load_meta(args.meta, policy)
    build_s = time.perf_counter() - t0
    fps = round(float(meta.get("source", {}).get("fps") or 30))
    budget_ms = 1000.0 / fps
    seconds = math.ceil(args.steps / args.episodes) / fps
    common = {"n_action_steps": args.n_action_steps}
    rollout(policy, meta, 1, seed=args.seed + 1_000_000, max_seconds=0.5, **common)  # warm-up
    t1 = time.perf_counter()
    results = rollout(policy, meta, args.episodes, seed=args.seed, max_seconds=seconds, **common)
    wall = time.perf_counter() - t1
    lat = [x for r in results for x in r.latencies]
    replan = [x for r in results for x in r.replan_latencies]
    queued = [x for r in results for t, x in enumerate(r.latencies) if t % r.n_action_steps != 0]
    sim = [x for r in results for x in r.sim_seconds]
    render_ms = render_only_ms(meta)
    dims = policy.dims
    report = {
        "policy": source,
        "meta": meta_source,
        "device": args.device,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "mujoco_gl": os.environ.get("MUJOCO_GL"),
        "image_size": dims.image_size,
        "cameras": list(dims.cameras),
        "frame_history": dims.frame_history,
        "d_model": dims.d_model,
        "chunk_horizon": dims.chunk_horizon,
        "n_action_steps": results[0].n_action_steps,
        "episodes": len(results),
        "successes": sum(r.success for r in results),
        "steps": len(lat),
        "replanning_steps": len(replan),
        "control_ms_p50": pct(lat, 50),
        "control_ms_p99": pct(lat, 99),
        "control_ms_mean": float(np.mean(lat) * 1000),
        "replan_ms_p50": pct(replan, 50),
        "replan_ms_p99": pct(replan, 99),
        "queued_ms_p50": pct(queued, 50) if queued else None,
        "budget_ms": budget_ms,
        "p99_over_budget": pct(lat, 99) / budget_ms,
        "replan_p99_over_budget": pct(replan, 99) / budget_ms,
        "sim_step_ms_p50": pct(sim, 50),
        "render_only_ms": render_ms,
        "loop_wall_ms_per_step": wall / len(lat) * 1000,
        "build_seconds": build_s,
    }
    print(
        f"torch pinned to {report['torch_threads']} thread(s) (of {os.cpu_count()} CPUs), "
        f"device {args.device}, MUJOCO_GL={report['mujoco_gl']}"
    )
    print(f"policy: {source}")
    print(f"stats:  {meta_source}")
    print(
        f"dims: D={dims.d_model}, P={dims.image_size}, cameras={list(dims.cameras)}, "
        f"F={dims.frame_history}, H_c={dims.chunk_horizon}, "
        f"n_action_steps={report['n_action_steps']}"
    )
    print(
        f"{report['steps']} control steps in {len(results)} episodes "
        f"({report['replanning_steps']} replanning), {report['successes']} successes"
    )
    print(
        f"control step (policy.step), all steps:  p50 {report['control_ms_p50']:.2f} ms   "
        f"p99 {report['control_ms_p99']:.2f} ms   mean {report['control_ms_mean']:.2f} ms"
    )
    print(
        f"replanning steps only:                  p50 {report['replan_ms_p50']:.2f} ms   "
        f"p99 {report['replan_ms_p99']:.2f} ms"
    )
    if queued:
        print(f"queued steps only:                      p50 {report['queued_ms_p50']:.3f} ms")
    print(
        f"p99 / {budget_ms:.1f} ms ({fps} Hz budget): {report['p99_over_budget']:.2f}   "
        f"(replanning p99: {report['replan_p99_over_budget']:.2f})"
    )
    render = f"{render_ms:.2f} ms" if render_ms is not None else "n/a"
    print(
        f"simulator per step, for reference: env.step (physics + 2 cameras) p50 "
        f"{report['sim_step_ms_p50']:.2f} ms; rendering 2 cameras alone {render}; "
        f"whole loop {report['loop_wall_ms_per_step']:.2f} ms/step"
    )
    if args.json:
        print(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
