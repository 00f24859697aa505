"""Where does a decluttered tau pass get lost on its way to the actions? (issue 21)

    python benchmarks/telepathy/declutter_paths.py SIGMA SHARDS OUT --base BASE \
        [--episodes 100 --seed 10050 --max-seconds 10 --workers 2]

SIGMA is a Sigma policy after ``sigma declutter`` (``vision.tau_stem``), BASE the frozen
base it was trained on. ``sigma eval`` runs SIGMA as Sigma does: ``a = a_base + s ·
delta_a`` with ``delta_a = (a_tau - a_0) + g``, where only ``a_tau`` reads the
decluttered vision, through the tau-conditioned queries and ``high_level_rep``. This runs
the other way round, as the prototype ``declutter.py`` did: the frozen BASE acts alone,
every pass of its vision through SIGMA's tau stem, with the tau SIGMA's intent workspace
computes at that step (its memory carried across plans as in ``SigmaPolicy.step``).
Nothing is trained. Same stem, same tau: if this succeeds where ``sigma eval`` of SIGMA
does not, the tau path's other parts (queries, ``high_level_rep``, residual heads,
adapter) undo what the stem sees; if it fails too, the stem does.

Writes ``OUT/report.json`` (``estimated_oracle.write_report``, policy ``base-tau-stem``).
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).parents[1] / "base_levers"))
from estimated_oracle import closed_loop, closed_loop_parser, write_report

from sigma_core import SigmaPolicy
from sigma_vision.perceiver import PerceiverVision


def through_tau_stem(vision: PerceiverVision, images: Tensor, tau: Tensor | None = None) -> Tensor:
    """The base's patch features, every pass through ``stem_tau`` with ``current_tau``."""
    return PerceiverVision.patch_features(vision, images, vision.current_tau)


class BaseWithSigmaTau(SigmaPolicy):
    """The frozen base acting alone; before each plan, SIGMA's intent gives tau."""

    sigma: SigmaPolicy
    sigma_memory: Tensor | None

    def reset(self, n_action_steps: int | None = None) -> None:
        super().reset(n_action_steps)
        self.sigma_memory = None

    def act(self, batch: Any, m_prev: Tensor | None = None) -> tuple[Tensor, Tensor]:
        memory = self.sigma_memory
        if memory is None:
            memory = self.sigma.memory.initial_state(batch.batch_size, batch.state.device)
        intent = self.sigma._encode(batch, memory)[0]
        self.sigma_memory = intent.m_t
        self.tau = intent.tau
        self.vision.current_tau = intent.tau  # read by through_tau_stem
        return super().act(batch, m_prev)

    def _encode(self, batch: Any, m_prev: Tensor) -> Any:
        if not self.cluttered_prefix:
            return super()._encode(batch, m_prev)
        # the backbone and intent read the cluttered view (as Sigma's pass 1 does), the
        # queries and heads the decluttered one
        self.vision.current_tau = None
        intent = super()._encode(batch, m_prev)[0]
        self.vision.current_tau = self.tau
        return (intent, *self.encode_vision(batch))


def query_at_tau0(query: Any, rep: Tensor, tau: Tensor, state: Tensor, vision: Tensor) -> Any:
    """Sigma's 2B query batch (tau = 0 half, tau half) with the tau half reading the tau = 0
    half's c_text and tau = 0: tau reaches a_tau through the vision only."""
    b = rep.shape[0] // 2
    rep = torch.cat([rep[:b], rep[:b]])
    return type(query).forward(query, rep, torch.zeros_like(tau), state, vision)


def zero_residual(residual: Any, rep: Tensor, tau: Tensor) -> Any:
    return type(residual).forward(residual, rep, tau).map(torch.zeros_like)


def identity_adapt(out: Any) -> Any:
    return out.actions, None  # a = a_base + delta_a


def main() -> None:
    parser = closed_loop_parser(__doc__, "sigma")
    parser.add_argument("--base", required=True, help="the frozen base SIGMA was trained on")
    parser.add_argument(
        "--cluttered-prefix",
        action="store_true",
        help="the base's backbone reads the cluttered view; only its queries the decluttered",
    )
    parser.add_argument(
        "--sigma-vision-only",
        action="store_true",
        help="run SIGMA itself, its tau pass's queries at (c_text, tau = 0), no residual"
        " heads, no adapter: a = a_base + a_tau - a_0, tau only in the stem",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    shards, out = args.shards, args.out
    sigma = SigmaPolicy.from_pretrained(args.sigma).eval().requires_grad_(False)
    meta = json.loads((Path(shards) / "meta.json").read_text())
    if args.sigma_vision_only:
        sigma.query.forward = functools.partial(query_at_tau0, sigma.query)
        sigma.residual.forward = functools.partial(zero_residual, sigma.residual)
        sigma.adapt = identity_adapt
        results = closed_loop(sigma, meta, args)
        Path(out).mkdir(parents=True, exist_ok=True)
        write_report(Path(out), "sigma-vision-only", results, vars(args))
        return
    base = SigmaPolicy.from_pretrained(args.base).eval().requires_grad_(False)
    vision = base.vision
    vision.config = vision.config.model_copy(update={"tau_stem": True})  # tau_sees_pixels
    vision.stem_tau = sigma.vision.stem_tau
    vision.patch_features = functools.partial(through_tau_stem, vision)
    base.__class__ = BaseWithSigmaTau
    base.sigma = sigma
    base.sigma_memory = None
    base.cluttered_prefix = args.cluttered_prefix
    results = closed_loop(base, meta, args)
    Path(out).mkdir(parents=True, exist_ok=True)
    write_report(Path(out), "base-tau-stem", results, vars(args))


if __name__ == "__main__":
    main()
