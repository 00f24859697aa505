"""Can a vision workspace localize the cube at all? Train it alone to predict the scene state.

    python benchmarks/base_levers/vision_probe.py SHARDS SPEC [SPEC ...] --steps 1500
    python benchmarks/base_levers/vision_probe.py SHARDS SPEC --target all --save probe.safetensors

For each spec: its vision workspace (as configured, random init) plus a head on the
mean of its tokens is trained to regress ``observation.environment_state`` (normalized) on
the train split, Adam lr 1e-3, batch 32, 1 torch thread; the held-out (val split) MSE is
printed every 250 steps. ``--target cube-xy`` (default): the named cube's (x, y), linear
head. ``--target all``: the whole scene state, with the policy's own auxiliary head
(``SigmaPolicy.auxiliary_state``: LayerNorm, Linear, GELU, Linear), so that ``--save``
writes weights (``vision.*``, ``auxiliary_state.*``) that ``estimated_oracle.py`` drives
and a base can start from.
Predicting the mean gives 1.0: a workspace whose MSE stays near 1 cannot see the cube,
and no policy built on it can use its cameras for the task. The state is zeroed: only
the images carry the answer.
"""

from __future__ import annotations

import argparse
import os
import time

import torch
from safetensors.torch import save_file
from torch import nn

from sigma_core import build_component, get_registry, load_spec
from sigma_core.data import ENVIRONMENT_STATE, ShardDataset, collate, read_meta
from sigma_core.layers import scene_head

TARGETS = {"cube-xy": slice(0, 2), "all": slice(0, None)}  # cube-xy: cube.x, cube.y


def batches(ds: ShardDataset, size: int, gen: torch.Generator):
    while True:
        for idx in torch.randperm(len(ds), generator=gen).split(size):
            if len(idx) == size:
                yield collate([ds[int(i)] for i in idx])


def probe(
    shards: str, spec_path: str, steps: int, seed: int, target: str = "cube-xy", save: str = ""
) -> list[tuple[int, float, float]]:
    spec = load_spec(spec_path)
    dims = spec.model.dims
    torch.manual_seed(seed)
    vision = build_component("vision", spec.model.vision, dims, get_registry())
    width = len(read_meta(shards)["stats"][ENVIRONMENT_STATE]["mean"])
    cols = TARGETS[target]
    n_out = len(range(width)[cols])
    head = scene_head(dims.d_model, n_out) if target == "all" else nn.Linear(dims.d_model, n_out)
    params = [*vision.parameters(), *head.parameters()]
    opt = torch.optim.Adam(params, lr=1e-3)
    train = ShardDataset(shards, "train", environment_state=width)
    val = ShardDataset(shards, "val", environment_state=width, verify=False)
    val_batch = collate([val[i] for i in range(0, len(val), max(1, len(val) // 256))])
    gen = torch.Generator().manual_seed(seed)

    def loss_of(batch) -> torch.Tensor:
        state = torch.zeros(batch.state.shape[0], dims.vision_state_dim)
        pred = head(vision(batch.images, state).tokens.mean(dim=1))
        return (pred - batch.environment_state[:, cols]).pow(2).mean()

    curve = []
    start = time.perf_counter()
    for step, batch in zip(range(1, steps + 1), batches(train, 32, gen), strict=False):
        vision.train()
        loss = loss_of(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 250 == 0 or step == steps:
            vision.eval()
            with torch.no_grad():
                held_out = loss_of(val_batch).item()
            curve.append((step, held_out, time.perf_counter() - start))
            print(f"{spec_path} step {step}: val MSE {held_out:.3f} ({curve[-1][2]:.0f} s)")
            if save:  # checkpointed as it goes: a killed probe keeps its last weights
                weights = {f"vision.{k}": v for k, v in vision.state_dict().items()}
                weights |= {f"auxiliary_state.{k}": v for k, v in head.state_dict().items()}
                save_file({k: v.contiguous() for k, v in weights.items()}, save + ".tmp")
                os.replace(save + ".tmp", save)
    return curve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("shards")
    parser.add_argument("specs", nargs="+")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--target", choices=sorted(TARGETS), default="cube-xy")
    parser.add_argument("--save", default="", help="safetensors of the last probe's weights")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"1 torch thread; batch 32; target: {args.target} of the scene state, normalized")
    for spec in args.specs:
        probe(args.shards, spec, args.steps, args.seed, args.target, args.save)


if __name__ == "__main__":
    main()
