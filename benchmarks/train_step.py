"""Training throughput of `sigma train` on the CPU default, each figure with its reference.

Runs the real :class:`~sigma_core.train.trainer.Trainer` (loader, loss, backward, AdamW,
checkpoints) for both stages of the CPU default on the same shards:

* samples/s (windows/s) and median step time of stage ``base`` (configs/base-tiny.yaml)
  and of stage ``sigma`` (configs/sigma-tiny.yaml on the base just trained, its
  memory unrolled over runs of ``data.run_length`` windows): the ratio sigma / base
  per window is the telepathy pathway's training cost;
* the share of step time spent waiting for data (goal < 5%), from the trainer's
  own ``data_seconds`` and ``seconds`` columns;
* peak RSS of the process.

The shards are ``--data`` (e.g. data/shards from `sigma data sim` + `sigma
preprocess`), or synthetic episodes at the default dims written to a temp dir.

    uv run python benchmarks/train_step.py [--data data/shards] [--steps 40] [--threads 1]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def measure(spec, data: Path, out: Path, steps: int, warmup: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Train ``steps`` steps; step figures exclude the first ``warmup`` steps."""
    from sigma_core.train import Trainer

    rows: list[dict[str, float]] = []
    trainer = Trainer(spec, data, out, steps=steps, checkpoint_every=steps, val_every=10**9)
    trainer.train(on_step=rows.append)
    timed = rows[warmup:]
    step = statistics.median(r["seconds"] for r in timed)
    wait = sum(r["data_seconds"] for r in timed) / sum(r["seconds"] for r in timed)
    # a sample is a window: a row of a batch holds data.run_length of them
    batch = spec.data.batch_size * spec.train.grad_accum * spec.data.run_length
    return {"step_ms": 1e3 * step, "samples_per_s": batch / step, "data_wait": wait}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, help="preprocessed shards (default: synthetic)")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1: see FACTS)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from sigma_core import get_registry, load_spec
    from sigma_core.testing import write_synthetic_shards

    with tempfile.TemporaryDirectory(prefix="sigma-bench-") as tmp:
        tmp_path = Path(tmp)
        data = args.data or write_synthetic_shards(tmp_path / "shards", episodes=12, frames=60)
        registry = get_registry()
        base_spec = load_spec(REPO / "configs" / "base-tiny.yaml", registry)
        base = measure(base_spec, data, tmp_path / "base", args.steps, args.warmup)
        raw = load_spec(REPO / "configs" / "sigma-tiny.yaml", registry).model_dump(mode="json")
        raw["base_policy"] = {"type": "checkpoint", "path": str(tmp_path / "base" / "policy")}
        from sigma_core import validate_spec

        sigma = measure(
            validate_spec(raw, registry), data, tmp_path / "sigma", args.steps, args.warmup
        )
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(
        f"torch threads {args.threads}; {args.steps} steps per stage, first {args.warmup} untimed"
    )
    print(f"data: {args.data or 'synthetic shards (12 episodes x 60 frames)'}")
    for name, r in (("base", base), ("sigma", sigma)):
        print(
            f"stage {name:5s}: {r['step_ms']:6.1f} ms/step  {r['samples_per_s']:6.1f} samples/s"
            f"  data wait {100 * r['data_wait']:.1f}% of step time (goal < 5%)"
        )
    print(f"stage sigma / stage base step time: {sigma['step_ms'] / base['step_ms']:.2f}x")
    per_window = base["samples_per_s"] / sigma["samples_per_s"]
    print(f"stage sigma / stage base time per window: {per_window:.2f}x")
    print(f"peak RSS: {rss:.2f} GiB")


if __name__ == "__main__":
    main()
