"""Can a vision workspace localize the cube at all? Train it alone to predict the scene state.

    python benchmarks/base_levers/vision_probe.py SHARDS SPEC [SPEC ...] --steps 1500
    python benchmarks/base_levers/vision_probe.py SHARDS SPEC --target all --save probe.safetensors

For each spec: its vision workspace (as configured, random init) plus a head on the
mean of its tokens is trained to regress ``observation.environment_state`` (normalized) on
the train split, Adam lr 1e-3, batch 32, 1 torch thread; the held-out (val split) MSE is
printed every 250 steps, with its first columns (for cube-xy: 0 cube.x, 1 cube.y).
``--target named``: the policy's layout (``--save``), the loss weighted by the spec's
``train.losses.state_weights``: the columns an estimated base reads.
``--blank-camera NAME`` zeroes one camera (what does the other carry alone?);
``--joints`` lets the head also read the joint state (can the wrist view, placed by the
joints, locate the cube better than the overhead camera?).
``--target cube-xy`` (default): the named cube's (x, y), a linear head (``--mlp``: the
policy's). ``--target all``: the whole scene state, with the policy's own auxiliary head
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

# cube-xy: cube.x, cube.y; named: all columns (the policy's layout), the loss weighted by
# the spec's train.losses.state_weights (the columns an estimated base reads)
TARGETS = {"cube-xy": slice(0, 2), "all": slice(0, None), "named": slice(0, None)}


def batches(ds: ShardDataset, size: int, gen: torch.Generator):
    while True:
        for idx in torch.randperm(len(ds), generator=gen).split(size):
            if len(idx) == size:
                yield collate([ds[int(i)] for i in idx])


def probe(
    shards: str,
    spec_path: str,
    steps: int,
    seed: int,
    target: str = "cube-xy",
    save: str = "",
    blank_camera: str = "",
    joints: bool = False,
    mlp: bool = False,
) -> list[tuple[int, float, float]]:
    spec = load_spec(spec_path)
    dims = spec.model.dims
    torch.manual_seed(seed)
    vision = build_component("vision", spec.model.vision, dims, get_registry())
    width = len(read_meta(shards)["stats"][ENVIRONMENT_STATE]["mean"])
    cols = TARGETS[target]
    n_out = len(range(width)[cols])
    weights = torch.ones(n_out)
    if target == "named":
        if spec.train.losses.state_weights is None:
            raise SystemExit(f"{spec_path}: --target named needs train.losses.state_weights")
        weights = torch.tensor(spec.train.losses.state_weights, dtype=torch.float32)
    shown = weights.nonzero().flatten()[:6]  # the columns printed
    d_in = dims.d_model + (dims.state_dim if joints else 0)
    head = scene_head(d_in, n_out) if target != "cube-xy" or mlp else nn.Linear(d_in, n_out)
    if save and (joints or blank_camera):
        raise SystemExit("--save writes the policy's own layout: no --joints, no --blank-camera")
    params = [*vision.parameters(), *head.parameters()]
    opt = torch.optim.Adam(params, lr=1e-3)
    train = ShardDataset(shards, "train", environment_state=width)
    val = ShardDataset(shards, "val", environment_state=width, verify=False)
    val_batch = collate([val[i] for i in range(0, len(val), max(1, len(val) // 256))])
    gen = torch.Generator().manual_seed(seed)

    def errors_of(batch) -> torch.Tensor:
        """Squared error per sample and target column."""
        images = batch.images
        if blank_camera:  # this camera's frames zeroed: what do the others carry alone?
            images = images.clone()
            images[:, dims.cameras.index(blank_camera)] = 0
        state = torch.zeros(batch.state.shape[0], dims.vision_state_dim)
        pooled = vision(images, state).tokens.mean(dim=1)
        if joints:  # the joints beside the pooled tokens: the wrist view, located by them
            pooled = torch.cat([pooled, batch.state], dim=-1)
        return (head(pooled) - batch.environment_state[:, cols]).pow(2)

    def loss_of(batch) -> torch.Tensor:
        return (errors_of(batch) * weights).sum(dim=-1).mean() / weights.sum()

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
                per_column = errors_of(val_batch).mean(dim=0)
            held_out = ((per_column * weights).sum() / weights.sum()).item()
            curve.append((step, held_out, time.perf_counter() - start))
            first = ", ".join(f"{int(i)}: {per_column[i]:.3f}" for i in shown)
            print(
                f"{spec_path} step {step}: val MSE {held_out:.3f} (columns {first})"
                f" ({curve[-1][2]:.0f} s)",
                flush=True,
            )
            if save:  # checkpointed as it goes: a killed probe keeps its last weights
                saved = {f"vision.{k}": v for k, v in vision.state_dict().items()}
                saved |= {f"auxiliary_state.{k}": v for k, v in head.state_dict().items()}
                save_file({k: v.contiguous() for k, v in saved.items()}, save + ".tmp")
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
    parser.add_argument("--blank-camera", default="", help="zero this camera's frames")
    parser.add_argument("--joints", action="store_true", help="the head also reads the joint state")
    parser.add_argument("--mlp", action="store_true", help="the policy's head for cube-xy too")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"1 torch thread; batch 32; target: {args.target} of the scene state, normalized")
    for spec in args.specs:
        probe(
            args.shards,
            spec,
            args.steps,
            args.seed,
            args.target,
            args.save,
            args.blank_camera,
            args.joints,
            args.mlp,
        )


if __name__ == "__main__":
    main()
