"""DAgger for the scene estimator: refit s_hat's head on the states the policy itself visits.

    python benchmarks/base_levers/estimator_dagger.py BASE_POLICY_DIR SHARDS OUT_DIR \
        [--rounds 2] [--episodes 100] [--seed 20000] [--steps 2000] [--finetune head|vision]

Why: a camera-only base trained on the truth only (``train.teacher_forcing: 1``) acts on
its scene state like the oracle (88% fed the truth) but fails on its own estimate (20%).
Along demonstrations the estimate of the named cube improves as the arm approaches it
(normalized MSE 0.49 at frame 0, 0.03 from frame 128 on): the estimator has learned,
among other cues, where the expert's arm goes. In closed loop the arm goes where the
estimate says, and the estimate stays wrong (about 0.5 throughout). The policy's
actions need no relabelling (it acts on the scene state); the estimate does, and the
simulator knows the truth at every state the policy visits.

Each round: run the current policy closed-loop on ``--episodes`` seeds (from ``--seed``,
disjoint from ``sigma eval --sim``'s 10,000 + i) and record at every planning step the
frames, joints and true normalized ``observation.environment_state``
(:func:`sigma_sim.dagger.visit`); add them to the aggregate. Then, with
``--finetune head``, refit the auxiliary head alone (vision frozen, so the policy's
action path is unchanged) for ``--steps`` steps of batch 256 on the pooled vision
features ``mean_n V_base,n`` of the aggregate (round 0 also holds every window of
SHARDS' train split) with ``L_state`` (``train.losses.state_weights``); with
``--finetune vision``, train the vision and the head too
(:func:`sigma_core.train.refit_estimator`: stage base's objective on demonstration
windows plus ``L_state`` on the visited states). ``--finetune vision`` is what ``sigma
dagger`` does (it also resumes; same seeds, same weights: round 0's sha256 matched);
this script keeps the head-only variant beside it. Save the policy to
``OUT_DIR/round_K`` (the base's spec unchanged). Prints the named cube's (x, y) MSE
in closed loop per round, and the held-out (val) MSE offline. Evaluate a round with
``sigma eval OUT_DIR/round_K --data SHARDS --split test --sim 50``. One torch thread.
The head-only figures in docs/results.md were measured before the collection moved to
``visit`` (commit e00bcd3: features pooled from the float32 frames, not float16).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch import Tensor

from sigma_core import SigmaPolicy
from sigma_core.data import ShardDataset, collate
from sigma_core.train import VisitedStates, refit_estimator
from sigma_core.train.losses import state_loss
from sigma_sim.dagger import visit


def pooled(policy: SigmaPolicy, visited: VisitedStates, chunk: int = 256) -> Tensor:
    """The auxiliary head's input ``mean_n V_base,n`` at every visited state."""
    out = []
    with torch.no_grad():
        for i in range(0, len(visited), chunk):
            images = visited.images[i : i + chunk].float()
            vis = policy.estimate_scene(images, visited.state[i : i + chunk])[0]
            out.append(vis.tokens.mean(dim=1))
    return torch.cat(out)


def offline(policy: SigmaPolicy, shards: str, split: str) -> tuple[Tensor, Tensor]:
    """(pooled features, truth) of every window of one split."""
    dims = policy.dims
    ds = ShardDataset(
        shards,
        split,
        frame_history=dims.frame_history,
        environment_state=dims.scene_state_dim,
        actions=policy.spec.data.actions,
    )
    feats, truths = [], []
    for start in range(0, len(ds), 128):
        batch = collate([ds[i] for i in range(start, min(start + 128, len(ds)))])
        with torch.no_grad():
            feats.append(policy.estimate_scene(batch.images, batch.state)[0].tokens.mean(dim=1))
        truths.append(batch.environment_state.float())
    return torch.cat(feats), torch.cat(truths)


def named_mse(policy: SigmaPolicy, features: Tensor, truth: Tensor) -> float:
    with torch.no_grad():
        return (policy.auxiliary_state(features)[:, :2] - truth[:, :2]).pow(2).mean().item()


def refit(policy: SigmaPolicy, features: Tensor, truth: Tensor, steps: int, seed: int) -> None:
    """The auxiliary head alone, on the aggregate, with L_state (AdamW, cosine)."""
    head = policy.auxiliary_state
    weights = policy.spec.train.losses.state_weights
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(head.parameters(), lr=3e-4, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    head.train()
    for _ in range(steps):
        idx = torch.randint(len(features), (256,), generator=gen)
        loss = state_loss(head(features[idx]), truth[idx], weights)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    head.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base")
    parser.add_argument("shards")
    parser.add_argument("out")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--seed", type=int, default=20_000)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument(
        "--finetune",
        choices=("head", "vision"),
        default="head",
        help="head: refit the auxiliary head on pooled features (the action path unchanged);"
        " vision: the vision and head too, with stage base's objective on demonstrations",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    policy = SigmaPolicy.from_pretrained(args.base).eval()
    for p in policy.parameters():
        p.requires_grad_(False)
    for p in policy.auxiliary_state.parameters():
        p.requires_grad_(True)
    meta = json.loads((Path(args.shards) / "meta.json").read_text())
    features, truth = (
        offline(policy, args.shards, "train") if args.finetune == "head" else (None, None)
    )
    val = offline(policy, args.shards, "val")
    pool: VisitedStates | None = None
    dims = policy.dims
    demonstrations = ShardDataset(
        args.shards,
        "train",
        frame_history=dims.frame_history,
        environment_state=dims.scene_state_dim,
        actions=policy.spec.data.actions,
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = []
    for k in range(args.rounds):
        start = time.perf_counter()
        seed = args.seed + k * args.episodes  # fresh scenes every round
        visited, results = visit(policy, meta, args.episodes, seed, max_seconds=10.0)
        f, t = pooled(policy, visited), visited.truth
        row = {
            "round": k,
            "rollout_success": sum(r.success for r in results) / len(results),
            "closed_loop_named_mse": round(named_mse(policy, f, t), 4),
            "val_named_mse": round(named_mse(policy, *val), 4),
        }
        if args.finetune == "head":
            features, truth = torch.cat([features, f]), torch.cat([truth, t])
            refit(policy, features, truth, args.steps, seed=k)
            after = named_mse(policy, f, t)
            size = len(features)
        else:
            pool = visited if pool is None else pool + visited
            refit_estimator(policy, demonstrations, pool, args.steps, seed=k)
            val = offline(policy, args.shards, "val")  # the vision changed
            after = float("nan")  # the recorded features predate the new vision
            size = len(pool)
        row |= {
            "after_refit_closed_loop_named_mse": round(after, 4),
            "after_refit_val_named_mse": round(named_mse(policy, *val), 4),
            "aggregate": size,
            "seconds": round(time.perf_counter() - start, 1),
        }
        policy.save_pretrained(out / f"round_{k}")
        log.append(row)
        print(json.dumps(row), flush=True)
    (out / "dagger.json").write_text(json.dumps(log, indent=1))


if __name__ == "__main__":
    main()
