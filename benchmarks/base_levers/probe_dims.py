"""Held-out error of a saved scene-state probe, per entry of observation.environment_state.

    python benchmarks/base_levers/probe_dims.py SHARDS PROBE.safetensors PROBE_SPEC [--split val]
    python benchmarks/base_levers/probe_dims.py SHARDS RUN [--split val] [--by-frame]

PROBE: weights saved by ``vision_probe.py --target all --save`` (with the spec it was
trained with), or a run / policy directory of a base with ``model.scene_state: estimated``
(its own estimate s_hat = head(mean V_base)). Prints, for each named entry, the MSE in
normalized units and the RMS error in the recorded units (metres for positions), over
every frame of the split's episodes. ``--by-frame`` adds the named cube's (x, y) error by
the frame's index in its episode: how the estimate improves along a demonstration.
"""

from __future__ import annotations

import argparse

import torch
from estimated_oracle import SceneProbe
from safetensors.torch import load_file

from sigma_core import SigmaBatch
from sigma_core.data import ENVIRONMENT_STATE, ShardDataset, collate, read_meta
from sigma_core.eval.replay import open_source
from sigma_core.model.policy import SigmaPolicy


def load_policy(path: str) -> SigmaPolicy:
    """A saved policy or run, or a training checkpoint (``RUN/checkpoints/step_N``)."""
    from pathlib import Path

    from sigma_core import build_policy, get_registry
    from sigma_core.model.checkpoint import pin_providers, read_meta
    from sigma_core.spec import validate_spec
    from sigma_core.train.checkpoint import load_trained
    from sigma_core.train.stages import configure_stage

    if not (Path(path) / "heads.safetensors").is_file():
        return SigmaPolicy.from_pretrained(open_source(path).directory).eval()
    registry = get_registry()
    spec = validate_spec(pin_providers(read_meta(path), registry, path), registry)
    policy = build_policy(spec, registry)
    configure_stage(policy, spec.train.stage)
    load_trained(policy, Path(path))
    return policy.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("shards")
    parser.add_argument("probe")
    parser.add_argument("spec", nargs="?", help="the probe's spec (not for a run)")
    parser.add_argument("--split", default="val")
    parser.add_argument("--every", type=int, default=4, help="every k-th frame")
    parser.add_argument(
        "--by-frame",
        action="store_true",
        help="also the named cube's (x, y) MSE by frame index in the episode: frames 0, 8,"
        " 16, 24 and 64-frame bins (every frame read)",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    meta = read_meta(args.shards)
    stats = meta["stats"][ENVIRONMENT_STATE]
    names = meta["source"].get("environment_state_names") or list(
        map(str, range(len(stats["mean"])))
    )
    width = len(stats["mean"])
    if args.spec:
        probe = SceneProbe(args.spec, width)
        probe.load_state_dict(load_file(args.probe))
        probe.eval()
    else:
        policy = load_policy(args.probe)

        def probe(images: torch.Tensor) -> torch.Tensor:
            b = images.shape[0]
            blank = SigmaBatch(images, torch.zeros(b, policy.dims.state_dim), [""] * b)
            return policy.encode_vision(blank)[2]

    ds = ShardDataset(args.shards, args.split, environment_state=width, verify=False)
    every = 1 if args.by_frame else args.every
    err, frame, last, k = [], [], None, 0
    with torch.no_grad():
        for start in range(0, len(ds), 64 * every):
            items = [ds[i] for i in range(start, min(len(ds), start + 64 * every), every)]
            for item in items:  # the frame's index in its episode (windows are in order)
                k = 0 if item["episode"] != last else k + 1
                last = item["episode"]
                frame.append(k)
            batch = collate(items)
            err.append(probe(batch.images) - batch.environment_state)
    e = torch.cat(err)
    if args.by_frame:
        named = e[:, :2].pow(2).mean(1)
        at = torch.tensor(frame)
        for f in (0, 8, 16, 24):
            print(f"frame {f:>3}: named cube (x, y) MSE {named[at == f].mean():.3f}")
        for lo in range(0, int(at.max()) + 1, 64):
            pick = (at >= lo) & (at < lo + 64)
            print(f"frames {lo}-{lo + 63}: named cube (x, y) MSE {named[pick].mean():.3f}"
                  f" ({int(pick.sum())} frames)")  # fmt: skip
    std = ds.environment_norm.std
    mse = e.pow(2).mean(0)
    print(f"{len(e)} frames of {args.split}; overall normalized MSE {mse.mean():.3f}")
    for i, name in enumerate(names):
        units = (
            f"  RMS {float(mse[i].sqrt() * std[i]) * 100:.2f} cm (std {float(std[i]) * 100:.2f})"
        )
        print(f"{name:>24}: MSE {float(mse[i]):.3f}{units}")


if __name__ == "__main__":
    main()
