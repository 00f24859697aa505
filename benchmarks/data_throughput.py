"""Data pipeline throughput, each figure measured against a reference in the same run.

1. Preprocess: ``sigma preprocess``'s reader + window cutter + shard writer, in
   windows/s, against iterating the same windows with
   ``LeRobotDataset.__getitem__`` + ``delta_timestamps`` (the per-item approach of
   the paper's script: one item per window, actions over T steps). Goal >= 10x.
2. Loader: ``ShardDataset`` + ``make_loader`` samples/s against the default
   model's training step demand (forward + backward + AdamW step, samples/s).
   Goal >= 20x.

The dataset is written here with LeRobot's own writer (random-walk actions,
synthetic frames): ``--video --size 480x640`` reproduces the svla_so101_pickplace
layout; the default (images, 96x96) is the layout ``sigma data sim`` records.

    uv run python benchmarks/data_throughput.py [--video --size 480x640] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]


def write_dataset(root: Path, episodes: int, length: int, size: tuple[int, int], video: bool):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from sigma_lerobot.schema import FPS, ROBOT_TYPE, so101_features

    feats = so101_features({"overhead": size, "wrist": size}, use_videos=video)
    ds = LeRobotDataset.create(
        "bench/so101", fps=FPS, root=root, robot_type=ROBOT_TYPE, features=feats, use_videos=video
    )
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[: size[0], : size[1]]
    for _ in range(episodes):
        act = np.cumsum(rng.normal(0, 1, (length, 6)), 0).astype(np.float32)
        for t in range(length):
            img = np.repeat(((xx + yy + 2 * t) % 256).astype(np.uint8)[..., None], 3, 2)
            ds.add_frame(
                {
                    "action": act[t],
                    "observation.state": act[t],
                    "observation.images.overhead": img,
                    "observation.images.wrist": img[::-1].copy(),
                    "task": "Pick up the red cube and place it on the blue circle.",
                }
            )
        ds.save_episode()
    ds.finalize()


def bench_baseline(root: Path, horizon: int, limit: int) -> tuple[float, int]:
    """windows/s of per-window __getitem__ with delta_timestamps over T action steps."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    probe = LeRobotDataset("bench/so101", root=root, video_backend="pyav")
    fps = probe.fps
    delta = {"action": [k / fps for k in range(horizon)]}
    ds = LeRobotDataset("bench/so101", root=root, delta_timestamps=delta, video_backend="pyav")
    # the same windows preprocessing keeps: starts 0..N-T of every episode
    starts = [
        a + t
        for a, b in zip(
            ds.meta.episodes["dataset_from_index"],
            ds.meta.episodes["dataset_to_index"],
            strict=True,
        )
        for t in range(b - a - horizon + 1)
    ]
    idx = starts[:: max(1, len(starts) // limit)][:limit]
    ds[idx[0]]  # warm-up (opens files)
    t0 = time.perf_counter()
    for i in idx:
        item = ds[i]
        assert item["action"].shape == (horizon, 6)
    return len(idx) / (time.perf_counter() - t0), len(idx)


def bench_preprocess(root: Path, out: Path, image_size: int) -> tuple[float, int, float]:
    from sigma_core.data import PreprocessOptions, preprocess
    from sigma_lerobot.dataset import LeRobotSource

    t0 = time.perf_counter()
    src = LeRobotSource(str(root), ["overhead", "wrist"], video_backend="pyav")
    opts = PreprocessOptions(
        cameras=["overhead", "wrist"], image_size=image_size, min_action_norm=0
    )
    meta = preprocess(src, out, opts)
    dt = time.perf_counter() - t0
    n = meta["counts"]["windows_kept"]
    return n / dt, n, dt


def bench_loader(out: Path, batch: int, workers: int, batches: int) -> float:
    from sigma_core.data import ShardDataset, make_loader

    ds = ShardDataset(out, split="all")
    loader = make_loader(ds, batch, num_workers=workers, drop_last=True)
    it = iter(loader)
    next(it)
    t0 = time.perf_counter()
    n = 0
    for _ in range(batches):
        try:
            b = next(it)
        except StopIteration:
            it = iter(loader)
            b = next(it)
        n += b.batch_size
    return n / (time.perf_counter() - t0)


def bench_train_step(out: Path, batch: int, steps: int) -> float:
    """samples/s of the default model: forward + TRAF loss + backward + AdamW."""
    from sigma_core import build_policy, load_spec
    from sigma_core.data import ShardDataset, make_loader
    from sigma_core.train import LossConfig, traf

    spec = load_spec(REPO / "configs" / "default.yaml")
    policy = build_policy(spec)
    opt = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=1e-4)
    batches = [
        b for b, _ in zip(make_loader(ShardDataset(out), batch), range(steps + 1), strict=False)
    ]

    def step(b) -> None:  # type: ignore[no-untyped-def]
        loss = traf(policy(b).actions, b.targets, LossConfig()).total
        opt.zero_grad()
        loss.backward()
        opt.step()

    step(batches[0])
    t0 = time.perf_counter()
    for b in batches[1 : steps + 1]:
        step(b)
    return steps * batch / (time.perf_counter() - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--episodes", type=int, default=8)
    ap.add_argument("--length", type=int, default=150)
    ap.add_argument("--size", default="96x96", help="HxW of the recorded cameras")
    ap.add_argument("--video", action="store_true", help="store cameras as AV1 video")
    ap.add_argument("--baseline-windows", type=int, default=200)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (pinned)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    h, w = (int(x) for x in args.size.split("x"))
    tmp = Path(tempfile.mkdtemp(prefix="sigma-bench-"))
    try:
        root, out = tmp / "ds", tmp / "shards"
        t0 = time.perf_counter()
        write_dataset(root, args.episodes, args.length, (h, w), args.video)
        print(
            f"machine: {os.cpu_count()} cpus, torch threads {args.threads}; dataset "
            f"{args.episodes}x{args.length} frames, 2 cameras {h}x{w} "
            f"{'video' if args.video else 'images'} (written in {time.perf_counter() - t0:.0f} s)"
        )
        pre, n, dt = bench_preprocess(root, out, 96)
        base, nb = bench_baseline(root, 16, args.baseline_windows)
        print(f"preprocess        {pre:9.1f} windows/s  ({n} windows in {dt:.1f} s)")
        print(f"__getitem__+delta {base:9.1f} windows/s  ({nb} windows sampled)")
        print(f"ratio preprocess / per-item: {pre / base:.1f}x (goal >= 10x)")
        load = bench_loader(out, args.batch, args.workers, 100)
        load0 = bench_loader(out, args.batch, 0, 100)
        demand = bench_train_step(out, args.batch, 10)
        print(
            f"loader            {load:9.1f} samples/s  ({args.workers} workers, batch {args.batch})"
        )
        print(f"loader            {load0:9.1f} samples/s  (in-process, batch {args.batch})")
        print(f"train step demand {demand:9.1f} samples/s  (default spec, fwd+bwd+AdamW)")
        print(
            f"ratio loader / demand: {load / demand:.1f}x ({load0 / demand:.1f}x in-process) "
            "(goal >= 20x)"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
