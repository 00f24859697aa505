"""``sigma eval``'s offline replay: windows per second, batches of episodes against one at a time.

Builds the quickstart-sized runs with random weights (configs/base-tiny.yaml and,
on top of it, configs/sigma-tiny.yaml: 96 px, two cameras, a checkpoint base),
writes synthetic held-out shards at their dims (``--episodes`` episodes of
``--frames`` frames, two instructions, half of them held out), and times
:func:`sigma_core.eval.replay` of the Sigma run (its three groups, image
reliance included) with ``--episodes-per-batch`` episodes per forward against
the reference, one episode per forward (the replay before batching). It checks
that both give the same rows (metrics within 1e-5 relative) and prints windows
per second and the ratio.

    uv run python benchmarks/eval_replay_speed.py [--episodes 16] [--frames 96]
        [--episodes-per-batch 8] [--device cpu] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]


def build_runs(root: Path) -> Path:
    """The base and the Sigma run of the quickstart, random weights; returns the Sigma run."""
    from sigma_core import build_policy, get_registry, validate_spec

    def save(config: str, where: Path, **override: Any) -> Path:
        raw = yaml.safe_load((REPO / "configs" / config).read_text()) | override
        build_policy(validate_spec(raw, get_registry())).save_pretrained(where)
        return where

    base = save("base-tiny.yaml", root / "base")
    return save(
        "sigma-tiny.yaml", root / "sigma", base_policy={"type": "checkpoint", "path": str(base)}
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=16)
    parser.add_argument("--frames", type=int, default=96)
    parser.add_argument("--episodes-per-batch", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    from sigma_core.data import ShardDataset
    from sigma_core.eval import open_source, replay_source, resolve_device
    from sigma_core.testing import write_synthetic_shards

    device = resolve_device(args.device)
    with tempfile.TemporaryDirectory(prefix="sigma-replay-") as tmp:
        root = Path(tmp)
        sigma = build_runs(root)
        dims = open_source(sigma).spec.model.dims
        shards = write_synthetic_shards(
            root / "shards",
            dims,
            episodes=args.episodes,
            frames=args.frames,
            val_fraction=0,
            test_fraction=0.5,
        )
        ds = ShardDataset(shards, split="test")
        source = open_source(sigma)
        stride = source.spec.run_stride()
        timings: dict[str, float] = {}
        rows: dict[str, list[dict[str, Any]]] = {}
        with source.loaded(device):  # loading is not timed; each setting runs twice, best kept
            for label, per_batch in 2 * [("batched", args.episodes_per_batch), ("one", 1)]:
                t0 = time.perf_counter()
                rows[label] = replay_source(source, ds, stride, 0, episodes_per_batch=per_batch)
                seconds = time.perf_counter() - t0
                timings[label] = min(seconds, timings.get(label, seconds))
    for a, b in zip(rows["one"], rows["batched"], strict=True):
        assert (a["episode"], a["frame"], a["group"]) == (b["episode"], b["frame"], b["group"])
        for k in ("mse_vec", "mse_chk", "mse_trj", "tau_l2", "image_reliance"):
            assert abs(a[k] - b[k]) <= 1e-5 * abs(a[k]) + 1e-6, (k, a, b)
    windows = len({r["window"] for r in rows["batched"]})
    figures = {
        "device": str(device),
        "windows": windows,
        "episodes_per_batch": args.episodes_per_batch,
        "one_episode_windows_per_s": windows / timings["one"],
        "batched_windows_per_s": windows / timings["batched"],
        "ratio": timings["one"] / timings["batched"],
    }
    print(
        f"replay of {windows} windows on {device}: batched ({args.episodes_per_batch} episodes)"
        f" {figures['batched_windows_per_s']:.1f} windows/s, one episode per forward"
        f" {figures['one_episode_windows_per_s']:.1f} windows/s: {figures['ratio']:.2f}x"
        " (same rows within 1e-5)"
    )
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
