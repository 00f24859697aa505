"""Does the telepathy factor carry the named cube? Linear probes on held-out windows.

    python benchmarks/telepathy/tau_probe.py RUN SHARDS [--every 4]

For every ``--every``-th window of SHARDS (all splits), the policy of
RUN (a stage-sigma run or saved policy) encodes the window at the start of a run
(``m_prev`` = the memory's initial state) and the probe reads, per window:

- ``tau`` (E), ``z_intent`` (D) and ``c_text`` (D, the instruction's representation: a
  reference that must carry the colour), and the frozen base's scene estimate
  ``s_hat`` (its named-cube entries: what the base acts on);
- targets: the named cube's colour (from the instruction) and position (x, y) from
  ``observation.environment_state`` (normalized; 1.0 = predicting the mean).

Each probe is ridge regression (lambda 1e-2), cross-validated over 5 folds of whole
episodes (a window is scored by the probe fitted on the other folds' episodes):
colour accuracy (argmax over one-hot regressions; chance = the largest class share)
and the (x, y) MSE. ``s_hat``'s own error on the named cube is printed too, and for a
run with ``model.scene_correction`` the corrected ``s_tau``'s, per split. One torch
thread.
"""

from __future__ import annotations

import argparse
import re

import torch
from torch import Tensor

from sigma_core.data import ShardDataset, collate
from sigma_core.eval.replay import open_source

COLOURS = ("red", "green", "blue")


def features(policy, ds: ShardDataset, every: int) -> dict[str, Tensor]:
    rows: dict[str, list[Tensor]] = {}
    index = list(range(0, len(ds), every))
    for start in range(0, len(index), 64):
        items = [ds[i] for i in index[start : start + 64]]
        batch = collate(items)
        with torch.no_grad():
            m0 = policy.memory.initial_state(batch.batch_size, batch.state.device)
            intent, _, _, s_hat = policy._encode(batch, m0)
        colour = [COLOURS.index(re.search(r"the (\w+) cube", t).group(1)) for t in batch.texts]
        found = {
            "tau": intent.tau,
            "z_intent": intent.z_intent,
            "c_text": intent.c_text,
            "s_hat": s_hat[:, :2],
            "colour": torch.tensor(colour),
            "xy": batch.environment_state[:, :2],
            "episode": torch.tensor([int(it["episode"]) for it in items]),
        }
        for k, v in found.items():
            rows.setdefault(k, []).append(v if k in ("colour", "episode") else v.float())
    return {k: torch.cat(v) for k, v in rows.items()}


def corrected_errors(policy, shards: str, inputs: dict, every: int) -> None:
    """``model.scene_correction``: the named cube's (x, y) MSE of the base's ``s_hat`` and
    the pathway's ``s_tau`` per split (the correction trained on the train split only)."""
    for split in ("train", "val", "test"):
        ds = ShardDataset(shards, split, **inputs)
        errors = {"s_hat": [], "s_tau": []}
        for start in range(0, len(ds), 64 * every):
            batch = collate([ds[i] for i in range(start, min(start + 64 * every, len(ds)), every)])
            with torch.no_grad():
                m0 = policy.memory.initial_state(batch.batch_size, batch.state.device)
                intent, vis_base, state, s_hat = policy._encode(batch, m0)
                vis_mod = policy.vision.modulate(vis_base, batch.images, state, intent.tau)
                s_tau = policy.scene_correction(s_hat, intent.tau, vis_mod.tokens)
            xy = batch.environment_state[:, :2]
            errors["s_hat"].append((s_hat[:, :2] - xy).pow(2).mean(1))
            errors["s_tau"].append((s_tau[:, :2] - xy).pow(2).mean(1))
        found = {k: torch.cat(v).mean().item() for k, v in errors.items()}
        n = sum(len(v) for v in errors["s_hat"])
        print(f"{split:5s} ({n} windows) named cube (x, y) MSE: s_hat {found['s_hat']:.3f}"
              f"   s_tau {found['s_tau']:.3f}")  # fmt: skip


def ridge(x: Tensor, y: Tensor, lam: float = 1e-2) -> Tensor:
    x1 = torch.cat([x, torch.ones(len(x), 1)], dim=1)
    a = x1.T @ x1 + lam * torch.eye(x1.shape[1])
    return torch.linalg.solve(a, x1.T @ y)


def predict(w: Tensor, x: Tensor) -> Tensor:
    return torch.cat([x, torch.ones(len(x), 1)], dim=1) @ w


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("shards")
    parser.add_argument("--every", type=int, default=4)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)  # the folds
    source = open_source(args.run)
    from sigma_core.model.policy import SigmaPolicy

    policy = SigmaPolicy.from_pretrained(source.directory).eval()
    dims, spec = policy.dims, policy.spec
    inputs = {
        "frame_history": dims.frame_history,
        "environment_state": dims.scene_state_dim,
        "actions": spec.data.actions,
    }
    if spec.model.scene_correction:
        corrected_errors(policy, args.shards, inputs, args.every)
    data = features(policy, ShardDataset(args.shards, "all", **inputs), args.every)
    episodes = data["episode"].unique()
    fold = {int(e): i % 5 for i, e in enumerate(episodes[torch.randperm(len(episodes))])}
    folds = torch.tensor([fold[int(e)] for e in data["episode"]])
    n = len(folds)
    chance = torch.bincount(data["colour"], minlength=3).max().item() / n
    print(f"{args.run}: {n} windows of {len(episodes)} episodes; colour chance {chance:.2f}")
    print(f"s_hat (the base's estimate) named-cube (x, y) MSE: "
          f"{(data['s_hat'] - data['xy']).pow(2).mean():.3f}")  # fmt: skip
    onehot = torch.nn.functional.one_hot(data["colour"], 3).float()
    for name in ("tau", "z_intent", "c_text", "s_hat"):
        x = data[name]
        colour, xy = torch.zeros(n, 3), torch.zeros(n, 2)
        for k in range(5):
            fit, held = folds != k, folds == k
            colour[held] = predict(ridge(x[fit], onehot[fit]), x[held])
            xy[held] = predict(ridge(x[fit], data["xy"][fit]), x[held])
        accuracy = (colour.argmax(1) == data["colour"]).float().mean()
        mse = (xy - data["xy"]).pow(2).mean()
        print(f"{name:9s} colour accuracy {accuracy:.2f}   named cube (x, y) MSE {mse:.3f}")


if __name__ == "__main__":
    main()
