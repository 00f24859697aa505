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

The base's own estimate ``s_hat`` is the reference (it was trained on one-cube scenes):
its named-cube entries, and its entries of the named colour (``red_cube.x, .y``, ...),
which a base trained with weight on them (``train.losses.state_weights``) estimates.
Prints the root mean squared error of the named cube's table position, in cm
(denormalized with the shards' statistics), per split: if ``patches``
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
from sigma_vision.perceiver import spatial_softmax

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


class KeypointProbe(nn.Module):
    """Instruction-conditioned keypoints on the frozen stem's feature maps ``F`` (per camera):

        F' = F (1 + gamma(E[t])) + beta(E[t]);   maps = Conv1x1(GELU(F'));
        xy = MLP([spatial_softmax(maps) of every camera; E[t]])

    FiLM before the spatial softmax: the instruction can pick *which* blob the keypoints
    find, which FiLM on the pooled tokens (the paper's modulator) cannot undo afterwards.
    """

    def __init__(self, channels: int, cameras: int, d: int, tasks: int, k: int = 4) -> None:
        super().__init__()
        self.embed = nn.Embedding(tasks, d)
        self.film = nn.Linear(d, 2 * channels)
        self.maps = nn.Conv2d(channels, k, kernel_size=1)
        self.head = nn.Sequential(nn.Linear(cameras * k * 2 + d, d), nn.GELU(), nn.Linear(d, 2))

    def forward(self, stem: Tensor, task: Tensor) -> Tensor:
        e = self.embed(task)  # stem: (B, C, channels, h, w)
        gamma, beta = self.film(e)[:, None, :, None, None].chunk(2, dim=2)
        maps = self.maps(nn.functional.gelu(stem * (1 + gamma) + beta).flatten(0, 1))
        points = spatial_softmax(maps).unflatten(0, stem.shape[:2]).flatten(1)
        return self.head(torch.cat([points, e], dim=-1))


class PixelProbe(nn.Module):
    """:class:`KeypointProbe` on a trainable copy of the base's stem, from the images."""

    def __init__(self, stem: nn.Module, probe: KeypointProbe) -> None:
        super().__init__()
        import copy

        self.stem, self.probe = copy.deepcopy(stem).requires_grad_(True), probe

    def forward(self, images: Tensor, task: Tensor) -> Tensor:
        b, c = images.shape[:2]
        return self.probe(self.stem(images.flatten(0, 1)).unflatten(0, (b, c)), task)


def features(
    policy: SigmaPolicy, data: ShardDataset | Visited, tasks: list[str], chunk: int = 64
) -> dict[str, Tensor]:
    """Per window: pooled tokens, patch tokens, ``s_hat`` and the truth (normalized, every
    entry), the instruction's index in ``tasks``."""
    kinds = ("pooled", "patches", "stem", "pixels", "s_hat", "truth", "task")
    out: dict[str, list[Tensor]] = {k: [] for k in kinds}
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
            b, c = batch.images.shape[:2]  # the first frame of each camera's history
            stem = vision.stem(batch.images[:, :, 0].flatten(0, 1))
            out["stem"].append(stem.unflatten(0, (b, c)).half())
            out["pixels"].append(batch.images[:, :, 0].half())
            out["s_hat"].append(s_hat)
            out["truth"].append(batch.environment_state.float())
            out["task"].append(torch.tensor([tasks.index(t) for t in batch.texts]))
    return {k: torch.cat(v) for k, v in out.items()}


def batched(probe: nn.Module, x: Tensor, task: Tensor, chunk: int = 256) -> Tensor:
    """``probe(x, task)`` in chunks (the stem's maps are large)."""
    parts = [probe(x[i : i + chunk].float(), task[i : i + chunk]) for i in range(0, len(x), chunk)]
    return torch.cat(parts)


def rmse_cm(a: Tensor, b: Tensor) -> float:
    """Root mean squared distance of (N, 2) table positions in metres, in cm."""
    return 100 * (a - b).pow(2).sum(-1).mean().sqrt().item()


class Scene:
    """Table positions (m) from normalized scene states: the named cube's entries, or the
    per-colour entries of the colour each instruction names."""

    def __init__(self, meta: dict, tasks: list[str]) -> None:
        stats = meta["stats"]["observation.environment_state"]
        self.mean, self.std = torch.tensor(stats["mean"]), torch.tensor(stats["std"])
        names = meta["source"]["environment_state_names"]
        colour = [next(c for c in ("red", "green", "blue") if f" {c} " in t) for t in tasks]
        self.entries = torch.tensor([[names.index(f"{c}_cube.{a}") for a in "xy"] for c in colour])

    def named(self, s: Tensor) -> Tensor:
        return s[:, :2] * self.std[:2] + self.mean[:2]

    def of_colour(self, s: Tensor, task: Tensor) -> Tensor:
        idx = self.entries[task]
        return s.gather(1, idx) * self.std[idx] + self.mean[idx]


def visited_states(args: argparse.Namespace, meta: dict, policy: SigmaPolicy, name: str) -> Visited:
    """The closed-loop states ``name`` (``visited``: seeds 40,000 on, ``visited-test``:
    41,000 on), read from ``--cache`` when there, else recorded (and cached)."""
    from safetensors.torch import load_file, save_file

    episodes, seed = (args.episodes, 40_000) if name == "visited" else (args.test_episodes, 41_000)
    path = None if args.cache is None else args.cache / f"{name}-{seed}-{episodes}.safetensors"
    if path is not None and path.is_file():
        saved = load_file(str(path))
        texts = json.loads(path.with_suffix(".json").read_text())
        return Visited(texts=texts, **saved)
    visited, _ = visit(policy, meta, episodes, seed, args.max_seconds)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {k: getattr(visited, k) for k in ("images", "state", "memory", "truth")}
        path.with_suffix(".json").write_text(json.dumps(visited.texts))
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))
    return visited


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base")
    parser.add_argument("shards")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--episodes", type=int, default=250)
    parser.add_argument("--test-episodes", type=int, default=50)
    parser.add_argument("--max-seconds", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument(
        "--kinds",
        nargs="+",
        default=["pooled", "patches", "stem", "pixels"],
        help="the probes to train (pixels: the stem trained too)",
    )
    parser.add_argument(
        "--cache", type=Path, help="keep the visited states here (safetensors) and reuse them"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    policy = SigmaPolicy.from_pretrained(args.base).eval()
    n = policy.dims.scene_state_dim
    splits = {
        s: ShardDataset(args.shards, s, environment_state=n) for s in ("train", "val", "test")
    }
    meta = read_meta(args.shards)
    tasks = sorted(meta["tasks"])
    feats = {s: features(policy, d, tasks) for s, d in splits.items()}
    for name, episodes in (("visited", args.episodes), ("visited-test", args.test_episodes)):
        if episodes:
            feats[name] = features(policy, visited_states(args, meta, policy, name), tasks)
    if "visited" in feats:  # train on the demonstrations' windows and the visited scenes
        visited = feats.pop("visited")
        feats["train"] = {k: torch.cat([v, visited[k]]) for k, v in feats["train"].items()}
    scene = Scene(meta, tasks)
    train = feats["train"]
    truth = {s: scene.named(f["truth"]) for s, f in feats.items()}
    rows = {
        "s_hat, named entries": {
            s: rmse_cm(scene.named(f["s_hat"]), truth[s]) for s, f in feats.items()
        },
        "s_hat, the named colour's entries": {
            s: rmse_cm(scene.of_colour(f["s_hat"], f["task"]), truth[s]) for s, f in feats.items()
        },
    }
    for kind in args.kinds:
        torch.manual_seed(args.seed)
        d = policy.dims.d_model
        if kind in ("stem", "pixels"):
            cameras = len(policy.dims.cameras)
            probe = KeypointProbe(train["stem"].shape[2], cameras, d, len(tasks))
            if kind == "pixels":
                probe = PixelProbe(policy.vision.stem, probe)
        else:
            probe = Probe(d, len(tasks))
        opt = torch.optim.AdamW(probe.parameters(), lr=args.lr, weight_decay=1e-2)
        gen = torch.Generator().manual_seed(args.seed)
        for _ in range(args.steps):
            idx = torch.randint(len(train["truth"]), (64,), generator=gen)
            guess = probe(train[kind][idx].float(), train["task"][idx])
            loss = (guess - train["truth"][idx, :2]).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            rows[f"probe on {kind}"] = {
                s: rmse_cm(scene.named(batched(probe, f[kind], f["task"])), truth[s])
                for s, f in feats.items()
            }
    header = " | ".join(f"{s} ({len(f['truth'])} windows)" for s, f in feats.items())
    print(f"| features | {header} |")
    print("|---" * (len(feats) + 1) + "|")
    for name, row in rows.items():
        print(f"| {name} | " + " | ".join(f"{v:.1f}" for v in row.values()) + " |")


if __name__ == "__main__":
    main()
