"""Would the scene estimator place the cube better if it also read the joints (or every token)?

    python benchmarks/base_levers/joints_probe.py BASE_POLICY_DIR SHARDS OUT \
        [--episodes 150] [--seed 30000] [--steps 3000]

A camera-only base estimates the scene from its image tokens only,
``s_hat = head(mean_n V_base,n)`` (``SigmaPolicy.estimate_scene``; the joints reach the
state tokens, which the head does not read). The wrist camera sees the cube relative to
the gripper, so placing it in the world needs the arm's pose: from the joints, or from
what the overhead camera shows of the arm. This runs the base closed-loop on its own
estimate (``sigma_sim.dagger.visit``, the states DAgger refits on; seeds disjoint from
``sigma eval``'s and the shipped base's DAgger rounds), caches the visited states in
``OUT/visited.safetensors``, and fits fresh heads on the frozen first-pass tokens of the
first 80% of the states, tested on the last 20% (later episodes): the named cube's (x, y)
normalized MSE of

* the base's own head (no fit), and a refit of the same head on ``mean_n V``;
* ``[mean_n V; joints]`` (the joints through a second input of the same MLP);
* every token ``[V_1 .. V_N]`` and every token plus the joints;
* the joints alone (how much of the cube's place the arm's pose gives away).

Heads are LayerNorm, Linear(·, 128), GELU, Linear(128, 2), Adam 1e-3, batch 256, seeded.
Also split by the gripper (open: the approach). One torch thread.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from sigma_core import SigmaPolicy
from sigma_core.train.estimator import VisitedStates
from sigma_sim.dagger import visit

GRIPPER_OPEN = 0.5  # normalized gripper joint above which the jaws are open (the approach)


def features(policy: SigmaPolicy, visited: VisitedStates) -> tuple[Tensor, Tensor]:
    """The first pass's tokens (N, N_v, D) and the base's own s_hat (N, S)."""
    toks, s_hat = [], []
    with torch.no_grad():
        for i in range(0, len(visited), 128):
            vis, s = policy.estimate_scene(
                visited.images[i : i + 128].float(), visited.state[i : i + 128]
            )
            toks.append(vis.tokens)
            s_hat.append(s)
    return torch.cat(toks), torch.cat(s_hat)


def fit(x: Tensor, y: Tensor, steps: int, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    head = nn.Sequential(nn.LayerNorm(x.shape[1]), nn.Linear(x.shape[1], 128), nn.GELU())
    head.append(nn.Linear(128, y.shape[1]))
    opt = torch.optim.Adam(head.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        idx = torch.randint(len(x), (256,), generator=g)
        loss = (head(x[idx]) - y[idx]).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return head.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base")
    parser.add_argument("shards")
    parser.add_argument("out", type=Path)
    parser.add_argument("--episodes", type=int, default=150)
    parser.add_argument("--seed", type=int, default=30_000)
    parser.add_argument("--steps", type=int, default=3000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    policy = SigmaPolicy.from_pretrained(args.base).eval()
    args.out.mkdir(parents=True, exist_ok=True)
    cache = args.out / "visited.safetensors"
    if cache.is_file():
        visited = VisitedStates(**load_file(str(cache)))
    else:
        meta = json.loads((Path(args.shards) / "meta.json").read_text())
        visited, results = visit(policy, meta, args.episodes, args.seed, 10.0)
        print(f"closed loop: {sum(r.success for r in results)}/{len(results)} succeeded")
        tmp = args.out / "visited.tmp.safetensors"
        save_file({"images": visited.images, "state": visited.state, "truth": visited.truth}, tmp)
        tmp.replace(cache)
    tokens, s_hat = features(policy, visited)
    y = visited.truth[:, :2]
    joints = visited.state
    inputs = {
        "refit head on mean V": tokens.mean(1),
        "mean V + joints": torch.cat([tokens.mean(1), joints], 1),
        "every token": tokens.flatten(1),
        "every token + joints": torch.cat([tokens.flatten(1), joints], 1),
        "joints alone": joints,
    }
    cut = int(0.8 * len(y))
    test_open = joints[cut:, 5] > GRIPPER_OPEN
    print(f"{len(y)} visited states: fit on {cut}, test on {len(y) - cut}"
          f" ({int(test_open.sum())} with the gripper open)")  # fmt: skip

    def report(name: str, pred: Tensor) -> None:
        err = (pred - y[cut:]).pow(2)
        print(f"{name:>24}: cube x {err[:, 0].mean():.3f}  y {err[:, 1].mean():.3f}"
              f"  (x, y) {err.mean():.3f}  open {err[test_open].mean():.3f}")  # fmt: skip

    report("the base's own head", s_hat[cut:, :2])
    for i, (name, x) in enumerate(inputs.items()):
        head = fit(x[:cut], y[:cut], args.steps, seed=i)
        with torch.no_grad():
            report(name, head(x[cut:]))


if __name__ == "__main__":
    main()
