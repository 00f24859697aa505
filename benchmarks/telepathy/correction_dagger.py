"""DAgger for Sigma's scene correction in the transfer scenes (issue 21, the design change).

    python benchmarks/telepathy/correction_dagger.py BASE SHARDS OUT \
        [--rounds 3 --episodes 100 --steps 1000 --seed 30000 --train correction intent]

BASE is a camera-only base that acts on its scene estimate (``model.scene_state:
estimated``, e.g. the shipped one); SHARDS the transfer demonstrations (scenes with
distractor cubes, normalized with the base's statistics: the quickstart's
shards-transfer). The question: can the telepathy pathway tell the frozen base *which*
cube the instruction names, where the base alone, trained on one-cube scenes, cannot?

The policy is ``configs/sigma-tiny.yaml`` laid over BASE (as the quickstart's Sigma run)
with ``model.scene_correction: true`` and the identity adapter. Its tau pass reads the
corrected estimate ``s_tau = s_hat + C([Attn(W_q tau, V_mod); tau; s_hat])``
(:class:`sigma_core.layers.SceneCorrection`) and acts as ``a = a_base + (a_tau - a_0) +
g([high_level_rep, tau])``. Only the parameters named by ``--train`` learn (default: the
correction and the intent workspace that makes tau), and only from

    L = λ_state · L_state(s_tau, s)

on the demonstrations' windows and on the states the policy itself visited (``s`` the
named cube's and the goal's normalized truth, ``train.losses.state_weights``): no action
loss, so the residual heads stay at their zero initialisation, the FiLM and queries at
theirs, and the pathway can only change *where* the base goes, never *how* it grasps
(the residual trained on L_act costs the base its grasp: ``residual_scale.py``).

Each round runs the current policy closed-loop in the transfer scenes (``episodes``
seeds from ``seed + k·episodes``, disjoint from the evaluation's 10,000 + i), records at
every planning step what it read, the memory ``m_{t-1}`` it read it with and the scene
truth, adds them to the aggregate, refits (seed ``k``) and saves ``OUT/round_k`` (a
policy directory ``sigma eval`` reads). ``OUT/rounds.json`` gets one row per round: the
closed loop's success and wrong-object rate, and the named cube's position error of
``s_hat`` (the base's) and ``s_tau`` (the pathway's) on the visited states before the
refit. Single process, one torch thread; not resumable (a round is minutes).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import Tensor

from sigma_cli.quickstart import on_base, shipped_config
from sigma_core import SigmaPolicy, get_registry, validate_spec
from sigma_core.data import ShardDataset, collate, read_meta
from sigma_core.train import Trainer, VisitedStates
from sigma_core.train.losses import state_loss
from sigma_core.types import SigmaBatch
from sigma_sim.rollout import rollout


@dataclass
class Visited(VisitedStates):
    """:class:`VisitedStates` plus the instruction and the memory ``m_{t-1}`` each plan read."""

    texts: list[str]
    memory: Tensor

    def batch(self, idx: Tensor) -> tuple[SigmaBatch, Tensor, Tensor]:
        texts = [self.texts[int(i)] for i in idx]
        batch = SigmaBatch(self.images[idx].float(), self.state[idx], texts)
        return batch, self.memory[idx], self.truth[idx]


def pathway_spec(base: Path) -> dict[str, Any]:
    """sigma-tiny over ``base`` with the scene correction and the identity adapter."""
    saved = json.loads((base / "sigma.json").read_text())["spec"]
    raw = on_base(shipped_config("sigma-tiny.yaml"), saved)
    raw["data"] = {"batch_size": 8, "run_length": 4}
    raw["base_policy"]["path"] = str(base)
    raw["model"]["scene_correction"] = True
    raw["model"]["adapter"] = {"type": "identity"}
    return raw


def scene_estimates(
    policy: SigmaPolicy, batch: SigmaBatch, m_prev: Tensor
) -> tuple[Tensor, Tensor]:
    """``(s_hat, s_tau)``: the base's estimate and the pathway's correction of it, as
    :meth:`SigmaPolicy.forward` computes them (pass 1, intent, modulated vision)."""
    intent, vis_base, vision_state, s_hat = policy._encode(batch, m_prev)
    vis_mod = policy.vision.modulate(vis_base, batch.images, vision_state, intent.tau)
    return s_hat, policy.scene_correction(s_hat.detach(), intent.tau, vis_mod.tokens)


def visit(policy: SigmaPolicy, meta: dict[str, Any], episodes: int, seed: int, seconds: float):
    rows: dict[str, list[Any]] = {k: [] for k in ("images", "state", "texts", "memory", "truth")}
    d = policy.dims.d_model

    def record(batch: SigmaBatch) -> None:
        memory = getattr(policy, "_memory", None)  # m_{t-1}: step() plans after this call
        rows["images"].append(batch.images.half())
        rows["state"].append(batch.state)
        rows["texts"] += batch.texts
        rows["memory"].append(torch.zeros(1, d) if memory is None else memory.clone())
        rows["truth"].append(batch.environment_state.float())

    results = rollout(
        policy, meta, episodes, seed=seed, max_seconds=seconds, workers=1, on_plan=record
    )
    cat = {k: v if k == "texts" else torch.cat(v) for k, v in rows.items()}
    return Visited(**cat), results


def named_errors(policy: SigmaPolicy, visited: Visited, chunk: int = 128) -> tuple[float, float]:
    """Mean squared error of ``s_hat`` and ``s_tau`` on the named cube's x, y (entries 0, 1)."""
    errs: list[Tensor] = []
    with torch.no_grad():
        for i in range(0, len(visited), chunk):
            batch, memory, truth = visited.batch(torch.arange(i, min(i + chunk, len(visited))))
            s_hat, s_tau = scene_estimates(policy, batch, memory)
            per = [(s[:, :2] - truth[:, :2]).pow(2).mean(1) for s in (s_hat, s_tau)]
            errs.append(torch.stack(per, 1))
    e = torch.cat(errs).mean(0)
    return float(e[0]), float(e[1])


def refit(
    policy: SigmaPolicy,
    demos: ShardDataset,
    visited: Visited,
    steps: int,
    seed: int,
    train: list[str],
    lr: float,
    batch_size: int = 16,
) -> float:
    """``L = λ_state·(L_state(s_tau(demos), s) + L_state(s_tau(visited), s))`` on the
    parameters whose names start with one of ``train``; returns the last loss."""
    losses = policy.spec.train.losses
    params = []
    for name, p in policy.named_parameters():
        p.requires_grad_(any(name.startswith(t + ".") for t in train))
        if p.requires_grad:
            params.append(p)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=policy.spec.train.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    gen = torch.Generator().manual_seed(seed)
    policy.train()
    loss = torch.zeros(())
    for _ in range(steps):
        idx = torch.randint(len(demos), (batch_size,), generator=gen)
        demo = collate([demos[int(i)] for i in idx])
        m0 = policy.memory.initial_state(batch_size, demo.state.device)
        _, s_tau = scene_estimates(policy, demo, m0)
        loss = state_loss(s_tau, demo.environment_state.float(), losses.state_weights)
        idx = torch.randint(len(visited), (batch_size,), generator=gen)
        batch, memory, truth = visited.batch(idx)
        _, s_tau = scene_estimates(policy, batch, memory)
        loss = losses.lambda_state * (loss + state_loss(s_tau, truth, losses.state_weights))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, policy.spec.train.max_grad_norm)
        opt.step()
        sched.step()
    policy.eval()
    return loss.item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base", type=Path)
    parser.add_argument("shards", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=30_000)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--max-seconds", type=float, default=10.0)
    parser.add_argument("--train", nargs="+", default=["scene_correction", "intent"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    raw = pathway_spec(args.base)
    spec = validate_spec(raw, get_registry(), source=str(args.out / "spec.yaml"))
    (args.out / "spec.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    trainer = Trainer(spec, args.shards, args.out / "init")  # builds and initialises from BASE
    policy = trainer.policy.eval()
    meta = read_meta(args.shards)
    demos = trainer.dataset  # the train split's windows (scene truth included)
    log: list[dict[str, Any]] = []
    pool: Visited | None = None
    for k in range(args.rounds):
        start = time.perf_counter()
        visited, results = visit(
            policy, meta, args.episodes, args.seed + k * args.episodes, args.max_seconds
        )
        pool = visited if pool is None else pool + visited
        e_hat, e_tau = named_errors(policy, visited)
        row: dict[str, Any] = {
            "round": k,
            "seeds": [args.seed + k * args.episodes, args.seed + (k + 1) * args.episodes - 1],
            "rollout_success": sum(r.success for r in results) / len(results),
            "rollout_wrong_object": sum(bool(r.wrong_object) for r in results) / len(results),
            "named_mse_s_hat": round(e_hat, 4),
            "named_mse_s_tau": round(e_tau, 4),
        }
        row["refit_loss"] = round(refit(policy, demos, pool, args.steps, k, args.train, args.lr), 4)
        row |= {"aggregate": len(pool), "seconds": round(time.perf_counter() - start, 1)}
        policy.save_pretrained(
            args.out / f"round_{k}", trained_on=trainer.trained_on(), stats=meta["stats"]
        )
        log.append(row | {"settings": {k2: str(v) for k2, v in vars(args).items()}})
        tmp = args.out / "rounds.json.tmp"
        tmp.write_text(json.dumps(log, indent=1))
        tmp.rename(args.out / "rounds.json")
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
