"""Do a frozen base's vision features say where the *named* cube is, among several? (issue 21)

    python benchmarks/telepathy/named_probe.py BASE SHARDS [--episodes 250 --test-episodes 50]

SHARDS: scenes with distractor cubes (the quickstart's shards-transfer), whose
``observation.environment_state`` starts with the named cube's x, y. BASE: a camera-only
base trained on one-cube scenes. For each token set the frozen base computes, a small
probe is trained on the train windows and scored on val and test (held-out episodes):

    p = Attn(q = E[instruction], K = V = LN(tokens));   xy = MLP([p; E[instruction]])

``E`` is a learned embedding of the instruction (three colours: what tau carries; its
colour probe is 0.98, ``tau_probe.py``). Besides the shards' splits (few scenes: the
quickstart records 50), the base is run closed-loop in the shards' scenes for
``--episodes`` fresh scenes (seeds 40,000 on) to train on and ``--test-episodes`` more
(seeds 41,000 on) to test on, recording every planning step's images and truth
(``correction_dagger.visit``), so that a probe can learn from hundreds of scenes.
Token sets:

- ``pooled``: V_base, the resampler's N_v tokens after the block, what
  ``model.scene_correction`` attends to today;
- ``patches``: the patch tokens (and keypoint tokens) before the resampler, each with its
  position and camera embedding, what the resampler reads.

The base's own estimate ``s_hat`` is the reference (it was trained on one-cube scenes).
Prints the named cube's mean squared error (normalized units) per split: if ``patches``
generalizes to the test episodes where ``pooled`` does not, the information is in the
features and the correction only attends to the wrong ones; if neither does, the
base's vision must learn it. Features are computed once, frozen; one torch thread.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from torch import Tensor, nn

from sigma_core import SigmaPolicy
from sigma_core.data import ShardDataset, collate, read_meta

sys.path.insert(0, str(Path(__file__).parent))
from correction_dagger import Visited, visit


class Probe(nn.Module):
    """``xy = MLP([Attn(E[t], LN(tokens)); E[t]])``."""

    def __init__(self, d: int, tasks: int, heads: int = 4) -> None:
        super().__init__()
        self.embed = nn.Embedding(tasks, d)
        self.norm = nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.head = nn.Sequential(nn.Linear(2 * d, d), nn.GELU(), nn.Linear(d, 2))

    def forward(self, tokens: Tensor, task: Tensor) -> Tensor:
        q = self.embed(task).unsqueeze(1)
        kv = self.norm(tokens)
        picked = self.attn(q, kv, kv, need_weights=False)[0].squeeze(1)
        return self.head(torch.cat([picked, q.squeeze(1)], dim=-1))


def features(
    policy: SigmaPolicy, data: ShardDataset | Visited, tasks: list[str], chunk: int = 64
) -> dict[str, Tensor]:
    """Per window: pooled tokens, patch tokens, s_hat's named xy, the truth's, task index."""
    out: dict[str, list[Tensor]] = {k: [] for k in ("pooled", "patches", "s_hat", "truth", "task")}
    vision = policy.vision
    with torch.no_grad():
        for i in range(0, len(data), chunk):
            if isinstance(data, Visited):
                batch, _, truth = data.batch(torch.arange(i, min(i + chunk, len(data))))
                batch.environment_state = truth
            else:
                batch = collate([data[j] for j in range(i, min(i + chunk, len(data)))])
            vis, s_hat = policy.estimate_scene(batch.images, batch.state)
            out["pooled"].append(vis.tokens.half())
            out["patches"].append(vision.encode_patches(batch.images).half())
            out["s_hat"].append(s_hat[:, :2])
            out["truth"].append(batch.environment_state[:, :2].float())
            out["task"].append(torch.tensor([tasks.index(t) for t in batch.texts]))
    return {k: torch.cat(v) for k, v in out.items()}


def mse(a: Tensor, b: Tensor) -> float:
    return (a - b).pow(2).mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base")
    parser.add_argument("shards")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--episodes", type=int, default=250)
    parser.add_argument("--test-episodes", type=int, default=50)
    parser.add_argument("--max-seconds", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    policy = SigmaPolicy.from_pretrained(args.base).eval()
    n = policy.dims.scene_state_dim
    splits = {
        s: ShardDataset(args.shards, s, environment_state=n) for s in ("train", "val", "test")
    }
    tasks = sorted(json.loads((splits["train"].root / "meta.json").read_text())["tasks"])
    feats = {s: features(policy, d, tasks) for s, d in splits.items()}
    meta = read_meta(args.shards)
    for name, episodes, seed in (
        ("visited", args.episodes, 40_000),
        ("visited-test", args.test_episodes, 41_000),
    ):
        if episodes:
            visited, _ = visit(policy, meta, episodes, seed, args.max_seconds)
            feats[name] = features(policy, visited, tasks)
    if "visited" in feats:  # train on the demonstrations' windows and the visited scenes
        visited = feats.pop("visited")
        feats["train"] = {k: torch.cat([v, visited[k]]) for k, v in feats["train"].items()}
    rows = {"s_hat (the base)": {s: mse(f["s_hat"], f["truth"]) for s, f in feats.items()}}
    for kind in ("pooled", "patches"):
        torch.manual_seed(args.seed)
        probe = Probe(policy.dims.d_model, len(tasks))
        opt = torch.optim.AdamW(probe.parameters(), lr=1e-3, weight_decay=1e-2)
        gen = torch.Generator().manual_seed(args.seed)
        train = feats["train"]
        for _ in range(args.steps):
            idx = torch.randint(len(train["truth"]), (64,), generator=gen)
            guess = probe(train[kind][idx].float(), train["task"][idx])
            loss = (guess - train["truth"][idx]).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            rows[f"probe on {kind}"] = {
                s: mse(probe(f[kind].float(), f["task"]), f["truth"]) for s, f in feats.items()
            }
    header = " | ".join(f"{s} ({len(f['truth'])} windows)" for s, f in feats.items())
    print(f"| features | {header} |")
    print("|---" * (len(feats) + 1) + "|")
    for name, row in rows.items():
        print(f"| {name} | " + " | ".join(f"{v:.3f}" for v in row.values()) + " |")


if __name__ == "__main__":
    main()
