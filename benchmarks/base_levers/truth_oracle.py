"""Upper bound of a perfect scene estimate: a camera-only base acting on the true scene state.

    python benchmarks/base_levers/truth_oracle.py BASE_POLICY_DIR SHARDS OUT \
        [--episodes 50] [--seed 10000] [--entries all|named|none] [--workers 2]

A camera-only base (``model.scene_state: estimated``) acts on its own estimate ``s_hat``
of the named cube's and the goal's position. This script asks what a perfect estimate
would buy: it runs the base's closed loop with ``s_hat`` replaced, on every planning
step, by the simulator's true (normalized) scene state in the estimated entries
(``train.losses.state_weights`` > 0): ``--entries all`` replaces the named cube and the
goal, ``--entries named`` the named cube only (the goal stays the base's estimate); in
the transfer scenes, the ceiling of a correction of ``s_hat`` by the instruction.
``--entries none`` acts on the estimate as the policy does and records its error on the
named cube's (x, y) at every planning step, by plan index (one process: ``--workers
1``). A base trained with ``train.teacher_forcing`` > 0 read the truth in training, so
this is in distribution for it. The privileged state is read at inference here: a
diagnostic, never a policy. Episodes are seeded as in ``sigma eval --sim`` (``--seed`` +
i, the scene of SHARDS' recording). ``--offset-cm R`` (with ``named`` or ``all``) moves
the named cube's true (x, y) by R cm in a direction drawn once per episode: the precision
a named-cube estimate needs before it pays (a probe's error on new scenes is mostly such
a per-scene bias). Writes ``OUT/report.json``
(:func:`estimated_oracle.write_report`, policy ``truth-ENTRIES``), so ``paired.py
OUT/report.json REPORT#POLICY`` pairs it by seed. One torch thread per process.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import torch
from estimated_oracle import closed_loop, closed_loop_parser, write_report
from torch import Tensor

from sigma_core import SigmaPolicy
from sigma_core.data import environment_normalizer
from sigma_core.types import SigmaBatch, VisionOutput

NAMED = (0, 1, 2)  # cube.x, cube.y, cube.z in sigma_sim.scene.environment_state


@contextlib.contextmanager
def handed_the_truth(policy: SigmaPolicy, cls: type[SigmaPolicy]) -> Iterator[SigmaPolicy]:
    """``policy`` (a camera-only base) as ``cls`` (which overrides ``encode_vision``), with
    the closed loop handing it the observed scene state; restored afterwards, so that a
    policy saved later keeps its own spec."""
    if policy.spec.model.scene_state != "estimated":
        raise SystemExit("not a camera-only base (model.scene_state: estimated)")
    own = policy.__class__
    # the rollout hands observation.environment_state to a policy whose spec observes it
    policy.spec.model.scene_state = "observed"
    policy.__class__ = cls
    try:
        yield policy
    finally:
        policy.__class__ = own
        policy.spec.model.scene_state = "estimated"


class TruthFed(SigmaPolicy):
    """The base on the truth in ``entries`` (or, ``none``, on ``s_hat``, recording its
    error by plan index in ``errors``)."""

    entries: str
    errors: list[tuple[int, float]]
    offset: Tensor  # (2,) normalized units per metre, for the named cube's x, y
    offset_cm: float
    _plan: int
    _shift: Tensor

    def encode_vision(self, batch: SigmaBatch) -> tuple[VisionOutput, Tensor, Tensor]:
        vis, s_hat = self.estimate_scene(batch.images, batch.state)
        truth = batch.environment_state.to(s_hat.dtype)
        take = torch.tensor([w > 0 for w in self.spec.train.losses.state_weights])
        if self.offset_cm and self._memory is None:  # a new episode: a new direction
            g = torch.Generator().manual_seed(int(truth[0, :2].abs().sum().item() * 1e6))
            angle = 2 * torch.pi * torch.rand((), generator=g)
            metres = self.offset_cm / 100 * torch.stack([angle.cos(), angle.sin()])
            self._shift = metres * self.offset
        if self.offset_cm:
            truth = truth.clone()
            truth[:, :2] += self._shift.to(truth.dtype)
        if self.entries == "none":  # act on the estimate; record its error as the loop runs
            self._plan = 0 if self._memory is None else self._plan + 1  # reset() clears it
            self.errors.append((self._plan, (s_hat[0, :2] - truth[0, :2]).pow(2).mean().item()))
            take[:] = False
        elif self.entries == "named":
            take[:] = False
            take[list(NAMED)] = True
        state = self._with_scene(batch.state, torch.where(take, truth, s_hat))
        return self.vision.restate(vis, batch.images, state), state, s_hat


def main() -> None:
    parser = closed_loop_parser(__doc__, "base")
    parser.add_argument("--entries", choices=("named", "all", "none"), default="all")
    parser.add_argument("--offset-cm", type=float, default=0.0)
    args = parser.parse_args()
    if args.offset_cm and args.entries == "none":
        parser.error("--offset-cm moves the truth the base is handed: use --entries named|all")
    torch.set_num_threads(1)

    meta = json.loads((Path(args.shards) / "meta.json").read_text())
    with handed_the_truth(SigmaPolicy.from_pretrained(args.base), TruthFed) as policy:
        policy.entries, policy.errors = args.entries, []
        policy.offset_cm = args.offset_cm
        width = len(meta["stats"]["observation.environment_state"]["std"])
        std = environment_normalizer(meta, args.shards, width).std[:2]
        policy.offset = 1.0 / std
        results = closed_loop(policy, meta, args)
    settings = vars(args)
    if policy.errors:  # the estimate's error along the episodes, by plans 0-7, 8-15, ...
        by_plan: dict[str, list[float]] = {}
        for i, e in policy.errors:
            by_plan.setdefault(f"{8 * (i // 8)}-{8 * (i // 8) + 7}", []).append(e)
        settings["estimate_mse_by_plan"] = {
            k: {"mse": round(sum(v) / len(v), 4), "plans": len(v)} for k, v in by_plan.items()
        }
        print(json.dumps(settings["estimate_mse_by_plan"]))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = f"truth-{args.entries}" + (f"-{args.offset_cm:g}cm" if args.offset_cm else "")
    write_report(out, name, results, settings)


if __name__ == "__main__":
    main()
