"""Benchmark of the so101-pickplace data source: recording speed and yield.

Run ``python -m sigma_sim.bench --episodes 10 --image-size 96 [--distractors 2]``.
It first pays the one-time costs (importing LeRobot, building the low-poly mesh
cache), then records into a fresh temporary folder and prints the summary of
the data source plus the wall time. ``frames_per_second`` covers everything the
call does after those one-time costs: building the environment, simulating,
rendering both cameras, encoding PNGs and writing/committing the dataset.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> dict[str, object]:
    """Parse arguments, record, print and return the summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--distractors", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--videos", action="store_true", help="store AV1 videos, not PNGs")
    parser.add_argument("--out", type=Path, default=None, help="keep the dataset here")
    args = parser.parse_args(argv)

    from sigma_sim.render import ensure_gl_backend

    ensure_gl_backend()
    from sigma_sim.config import So101PickPlaceConfig
    from sigma_sim.source import So101PickPlace

    cfg = So101PickPlaceConfig(
        image_size=args.image_size, distractors=args.distractors, use_videos=args.videos
    )
    t0 = time.perf_counter()
    import lerobot.datasets.lerobot_dataset  # noqa: F401  (one-time import cost)

    from sigma_sim.render import lowpoly_model_dir

    lowpoly_model_dir(cfg.mesh_faces)
    warmup = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp) / "ds"
        t1 = time.perf_counter()
        summary = So101PickPlace(cfg)(
            out_dir=str(out), episodes=args.episodes, seed=args.seed, progress=True
        )
        wall = time.perf_counter() - t1
    report = {
        **summary,
        "wall_seconds": round(wall, 2),
        "warmup_seconds": round(warmup, 2),
        "image_size": args.image_size,
        "distractors": args.distractors,
        "use_videos": args.videos,
        "cpu_count": os.cpu_count(),
        "mujoco_gl": os.environ.get("MUJOCO_GL"),
    }
    print(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
