"""π0.5 + Sigma against π0.5 alone, on the same inputs, in the same run.

Builds configs/sigma-pi05.yaml's model (pi05 base policy, backbone and vision
sharing one LeRobot PI05Policy) at random init (``allow_random_init``: no
download), then measures, batch 1 unless said:

1. latency: π0.5 alone (LeRobot's pre-processor + ``predict_action_chunk`` +
   post-processor, what ``base_policy: pi05`` runs) vs Sigma's ``act`` (π0.5 live
   + the Sigma heads, both passes, adapter), and Sigma's τ = 0 path
   (``telepathy=False``) for the ``act`` / τ=0 ratio; medians of ``--reps``;
2. peak memory of inference (RSS on CPU, ``max_memory_allocated`` on CUDA);
3. one stage-sigma LoRA training step (batch ``--train-batch``, precomputed
   a_base as ``sigma preprocess --base-policy`` gives it): time and peak memory.

Sizes: ``--size shrunken`` (LeRobot's code at the test fixture's sizes, seconds)
or ``--size full`` (the pi05_base architecture: Gemma-2B + Gemma-300M + SigLIP
So400m, 4.1 B parameters; ~18 GB RAM and minutes on CPU).

    uv run python benchmarks/pi05_cost.py [--size full] [--device cuda] [--threads 1]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]


def peak_gib(device: str) -> float:
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def median_ms(fn: Any, reps: int, device: str) -> float:
    fn()  # warm-up
    times = []
    for _ in range(reps):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def spec_for(size: str, dtype: str, image_size: int) -> dict[str, Any]:
    raw = yaml.safe_load((REPO / "configs" / "sigma-pi05.yaml").read_text())
    source: dict[str, Any] = {"path": None, "allow_random_init": True, "dtype": dtype}
    source["tokenizer"] = str(byte_tokenizer())
    if size == "shrunken":
        from sigma_pi05.config import Pi05Shrink

        source |= {"shrink": Pi05Shrink().model_dump(), "image_resolution": 56}
        raw["model"]["dims"] |= {"d_model": 64, "image_size": 32}
        raw["model"]["vision"]["num_queries"] = 8
        raw["model"]["query"]["num_queries"] = 8
        raw["model"]["trajectory"] |= {"width": 32, "num_heads": 4}
    else:
        raw["model"]["dims"]["image_size"] = image_size
    for slot in (raw["model"]["vision"], raw["model"]["backbone"], raw["base_policy"]):
        slot |= source
    # random init has LeRobot's default image keys observation.images.<camera>
    raw["base_policy"].pop("camera_map")
    return raw


def byte_tokenizer() -> Path:
    """A ByT5 tokenizer on disk (the PaliGemma one is gated; ids stay below its vocab)."""
    import tempfile

    from transformers import ByT5Tokenizer

    path = Path(tempfile.mkdtemp(prefix="sigma-bench-tok-"))
    ByT5Tokenizer().save_pretrained(path)
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--size", choices=["shrunken", "full"], default="shrunken")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--train-batch", type=int, default=4)
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--skip-train", action="store_true", help="inference figures only")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dtype = "bfloat16" if args.device == "cuda" else "float32"

    from sigma_core import SigmaPolicy, get_registry, validate_spec
    from sigma_core.testing import example_batch
    from sigma_core.train import LossConfig, traf

    t0 = time.perf_counter()
    spec = validate_spec(spec_for(args.size, dtype, args.image_size), get_registry())
    policy = SigmaPolicy(spec).to(args.device).eval()
    build_s = time.perf_counter() - t0
    pi05 = policy.base_policy.pi05
    n_pi05 = sum(p.numel() for p in pi05.parameters())
    n_all = sum(p.numel() for p in policy.parameters())
    print(
        f"torch {torch.__version__}, {args.threads} threads, {args.device}, π0.5 {dtype}, "
        f"size {args.size}: π0.5 {n_pi05 / 1e9:.3f} B params, Sigma adds "
        f"{(n_all - n_pi05) / 1e6:.1f} M (shared π0.5 counted once); built in {build_s:.0f} s"
    )
    batch = example_batch(spec.model.dims, batch_size=1).to(args.device)
    autocast = torch.autocast(args.device, torch.bfloat16, enabled=args.device == "cuda")

    with torch.no_grad(), autocast:
        alone = median_ms(lambda: policy.base_policy.chunk(batch), args.reps, args.device)
        tau0 = median_ms(lambda: policy(batch, telepathy=False), args.reps, args.device)
        act = median_ms(lambda: policy.act(batch), args.reps, args.device)
    print(f"inference, batch 1, median of {args.reps}:")
    print(f"  π0.5 alone (processors + predict_action_chunk) {alone:9.1f} ms")
    print(f"  Sigma τ=0 path (incl. π0.5)                    {tau0:9.1f} ms")
    print(f"  Sigma act (incl. π0.5)                         {act:9.1f} ms")
    print(f"  ratio π0.5+Sigma / π0.5 alone: {act / alone:.2f}x (goal <= 1.10x)")
    print(f"  ratio act / τ=0 path:          {act / tau0:.2f}x (goal <= 1.15x)")
    print(f"  peak memory so far: {peak_gib(args.device):.2f} GiB")

    if args.skip_train:
        return 0
    from sigma_core.train.stages import configure_stage

    configure_stage(policy, "sigma")
    policy.train()
    train = example_batch(spec.model.dims, batch_size=args.train_batch).to(args.device)
    with torch.no_grad():
        train.base_actions = policy.base_policy(train)  # precomputed, as in training
    params = [p for p in policy.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)

    def step() -> None:
        with autocast:
            loss = traf(policy(train).actions, train.targets, LossConfig()).total
        opt.zero_grad()
        loss.backward()
        opt.step()

    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    step_ms = median_ms(step, max(2, args.reps // 2), args.device)
    print(
        f"stage-sigma LoRA step, batch {args.train_batch}: {step_ms:.0f} ms, "
        f"{sum(p.numel() for p in params) / 1e6:.1f} M trainable, "
        f"peak memory {peak_gib(args.device):.2f} GiB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
