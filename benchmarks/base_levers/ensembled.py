"""A policy executed with ACT's temporal ensembling instead of one chunk per replan.

    python benchmarks/base_levers/ensembled.py RUN --data SHARDS --sim 50 --max-seconds 10 \
        --coeff 0.1 --out EVAL

Temporal ensembling (Zhao et al. 2023, ACT): the policy plans a chunk of H_c actions on
every control step, and the action executed at step t averages every plan that covers
t, ``a_t = sum_k w_k a_t^(k) / sum_k w_k`` with ``w_k = exp(-m k)`` and ``k = 0`` the
oldest plan (m = ``--coeff``; ACT uses 0.01 with 100-step chunks). It smooths the
switches between chunks that the replanning stride (``n_action_steps``) makes.

Writes ``EVAL/report.json`` in the shape ``table.py`` reads, one torch thread.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from estimated_oracle import write_report
from torch import Tensor

from sigma_core import SigmaBatch
from sigma_core.data import read_meta
from sigma_core.eval.replay import open_source
from sigma_core.model.policy import SigmaPolicy
from sigma_sim.rollout import rollout


class Ensembled(SigmaPolicy):
    """``step`` plans every control step and executes the temporal ensemble."""

    coeff: float

    def reset(self, n_action_steps: int | None = None) -> None:
        super().reset(1)
        self._plans: list[Tensor] = []  # oldest first; plan k covers steps k.. of its chunk

    @torch.no_grad()
    def step(self, observation: SigmaBatch) -> Tensor:
        if not hasattr(self, "_plans"):
            self.reset()
        plan, self._memory = self.act(observation, self._memory)
        self._plans.append(plan)
        h = plan.shape[1]
        self._plans = self._plans[-h:]
        n = len(self._plans)
        # the plan made `age` steps ago covers this step with its action `age`
        actions = torch.stack([p[:, n - 1 - i] for i, p in enumerate(self._plans)])
        w = torch.exp(-self.coeff * torch.arange(n, dtype=plan.dtype))  # k = 0: the oldest
        return (w[:, None, None] * actions).sum(0) / w.sum()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--data", required=True)
    parser.add_argument("--sim", type=int, default=50)
    parser.add_argument("--max-seconds", type=float, default=10.0)
    parser.add_argument("--coeff", type=float, default=0.1)
    parser.add_argument("--name", default="ensembled")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    policy = SigmaPolicy.from_pretrained(open_source(args.run).directory).eval()
    policy.__class__ = Ensembled
    policy.coeff = args.coeff
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = rollout(
        policy,
        read_meta(args.data),
        args.sim,
        max_seconds=args.max_seconds,
        n_action_steps=1,
        journal=out / "episodes.jsonl",
    )
    write_report(out, args.name, results, vars(args))


if __name__ == "__main__":
    main()
