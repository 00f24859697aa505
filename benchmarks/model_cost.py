"""Model cost, each figure against a reference measured in the same run.

1. The CPU default (configs/default.yaml): forward+backward step time and peak
   RSS, against the backbone's own forward+backward in the same step.
2. pi0.5 dimensions (configs/pi05-dims.yaml: D = 2048, a Gemma-2B-sized
   backbone, 50-step chunks, a 456-token prefix): the Sigma heads' forward time
   against the same-size backbone's forward, timed inside the same forward
   call. Goal: heads add <= 5%.

    uv run python benchmarks/model_cost.py [--skip-pi05] [--threads 1] [--device cuda]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


def rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


class Timed:
    """Accumulates the wall time of one module's forward calls."""

    def __init__(self, module: torch.nn.Module, device: str) -> None:
        self.seconds = 0.0
        self.device = device
        module.register_forward_pre_hook(self._start)
        module.register_forward_hook(self._stop)

    def _sync(self) -> None:
        if self.device == "cuda":
            torch.cuda.synchronize()

    def _start(self, *_: object) -> None:
        self._sync()
        self._t = time.perf_counter()

    def _stop(self, *_: object) -> None:
        self._sync()
        self.seconds += time.perf_counter() - self._t


def make_batch(dims, b: int, text_len: int, device: str):  # type: ignore[no-untyped-def]
    from sigma_core import SigmaBatch

    p, c, f = dims.image_size, len(dims.cameras), dims.frame_history
    images = torch.rand(b, c, f, 3, p, p, device=device)
    state = torch.randn(b, dims.state_dim, device=device)
    text = ("pick up the red cube and place it on the blue circle " * 20)[:text_len]
    return SigmaBatch(images, state, [text] * b)


def build(path: Path, device: str, d_model: int | None = None):  # type: ignore[no-untyped-def]
    from sigma_core import build_policy, load_spec

    spec = load_spec(path)
    if d_model:  # heads narrower than the backbone (the backbone keeps its own width W)
        dims = spec.model.dims.model_copy(update={"d_model": d_model})
        spec = spec.model_copy(update={"model": spec.model.model_copy(update={"dims": dims})})
    return spec, build_policy(spec).to(device)


def default_step(device: str, batch: int, steps: int) -> None:
    from sigma_core.testing import example_batch
    from sigma_core.train import LossConfig, traf

    spec, policy = build(REPO / "configs" / "default.yaml", device)
    timer = Timed(policy.backbone, device)
    b = example_batch(spec.model.dims, batch).to(device)
    opt = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=1e-4)

    def step() -> None:
        loss = traf(policy(b).actions, b.targets, LossConfig()).total
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()
    timer.seconds = 0.0
    before = rss_gib()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    dt = (time.perf_counter() - t0) / steps
    print(
        f"default spec, batch {batch}: step {dt * 1e3:.0f} ms (fwd+bwd+AdamW), "
        f"{batch / dt:.1f} samples/s, peak RSS {rss_gib():.2f} GiB (before steps {before:.2f})"
    )
    print(f"  backbone forward inside it: {timer.seconds / steps * 1e3:.0f} ms/step")


@torch.no_grad()
def pi05_heads(device: str, prefix: int, reps: int, d_model: int | None) -> None:
    spec, policy = build(REPO / "configs" / "pi05-dims.yaml", device, d_model)
    policy.eval()
    dims = spec.model.dims
    n_vis = spec.model.vision.params["num_queries"] + spec.model.vision.params["num_state_tokens"]
    text_len = prefix - n_vis  # byte tokenizer: one token per byte
    policy.backbone.config = policy.backbone.config.model_copy(update={"max_text_tokens": text_len})
    b = make_batch(dims, 1, text_len, device)
    timers = {slot: Timed(module, device) for slot, module in policy.named_components()}
    timer = timers["backbone"]
    seen = {}

    def record_length(_m: object, _a: object, out) -> None:  # type: ignore[no-untyped-def]
        seen["L"] = out.hidden.shape[1]

    policy.backbone.register_forward_hook(record_length)
    policy(b)  # warm-up
    for t in timers.values():
        t.seconds = 0.0
    t0 = time.perf_counter()
    for _ in range(reps):
        policy(b)
    total = (time.perf_counter() - t0) / reps
    backbone = timer.seconds / reps
    heads = total - backbone
    n_heads = sum(p.numel() for n, p in policy.named_parameters() if not n.startswith("backbone"))
    print(
        f"pi0.5 dims: prefix {seen['L']} tokens, D={dims.d_model}, W=2048, "
        f"chunk {dims.chunk_horizon}, "
        f"heads {n_heads / 1e6:.0f} M params, batch 1, {device}, peak RSS {rss_gib():.1f} GiB"
    )
    print(f"  backbone forward {backbone * 1e3:9.0f} ms")
    print(
        f"  Sigma heads      {heads * 1e3:9.0f} ms  (vision x2, intent, query x2, branches x2, ...)"
    )
    print(f"  ratio heads / backbone: {heads / backbone * 100:.1f}% (goal <= 5%)")
    slowest = sorted(timers.items(), key=lambda kv: -kv[1].seconds)
    print(
        "  per slot: "
        + ", ".join(
            f"{slot} {t.seconds / reps * 1e3:.0f} ms" for slot, t in slowest if slot != "backbone"
        )
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--skip-pi05", action="store_true")
    ap.add_argument("--prefix", type=int, default=456)
    ap.add_argument("--d-model", type=int, help="heads width D (default: the spec's 2048)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {args.threads} threads, device {args.device}")
    default_step(args.device, args.batch, 10)
    if not args.skip_pi05:
        pi05_heads(args.device, args.prefix, 2, args.d_model)
    return 0


if __name__ == "__main__":
    sys.exit(main())
