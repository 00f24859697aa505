"""Can a gate keep the decluttered tau pass out of scenes with nothing to remove? (issue 21)

    python benchmarks/telepathy/declutter_gate.py POLICY OUT --visits V [V ...] [--steps 1500]
    python benchmarks/telepathy/declutter_gate.py POLICY OUT --eval-shards S \
        [--eval-episodes 100 --eval-seed 10050] --report DIR

POLICY: a Sigma policy with ``vision.tau_stem`` whose stem is still zero (e.g.
configs/sigma-declutter.yaml after stage sigma); V: ``sigma declutter``'s saved visits
(transfer scenes and ``--also`` one-cube scenes). The tau stem's output is blended with
the base stem's by a per-image gate,

    F = stem(x) + g * (stem_tau(x; tau) - stem(x)),   g = sigmoid(w [mean F_0; max F_0; tau] + b)

(``F_0 = stem(x)``, pooled over the grid; ``w = 0``, ``b = 2`` at the start), fitted
with the stem by ``L_declutter`` on the visits
(``sigma_core.train.declutter.fit_declutter``, 1,500 steps, batch 32, Adam 3e-4;
``--supervise-gate W`` adds ``W * BCE(g, d)``, ``d`` whether the state's uncluttered
render differs from its image). Where there is nothing to remove, the loss can now be
met by closing the gate, exactly. A prototype outside the model (the gate lives on the
policy's tau stem for this process only); writes ``OUT/stem.safetensors`` and, with
``--eval-shards``, ``DIR/report.json`` (closed loop as ``sigma eval --sim``, policy
``declutter-gate``, one worker) and the mean gate of the episodes' planning steps.
"""

from __future__ import annotations

import argparse
import json
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).parents[1] / "base_levers"))
sys.path.insert(0, str(Path(__file__).parent))
from declutter_error import load
from estimated_oracle import write_report

from sigma_core import SigmaPolicy
from sigma_core.train.declutter import fit_declutter


def gate_loss(stem_tau: nn.Module, states: Any, weight: float) -> Callable[[Tensor], Tensor]:
    """``weight * BCE(g, d)`` per image for ``fit_declutter(extra_loss=...)``, ``d`` =
    whether the uncluttered render differs from the image (something to remove; the
    visits know), ``g`` the gate of the step's forward."""
    cameras = states.images.shape[1] * states.images.shape[2]
    clutter = (states.images != states.clean).flatten(1).any(dim=1).float()

    def loss(idx: Tensor) -> Tensor:
        g = stem_tau.live_gate.clamp(1e-6, 1 - 1e-6)
        target = clutter[idx].repeat_interleave(cameras)
        return weight * nn.functional.binary_cross_entropy(g, target)

    return loss


def gated_forward(self: nn.Module, stem: nn.Sequential, x: Tensor, tau: Tensor) -> Tensor:
    """The tau stem's output blended with the base stem's by the per-image gate."""
    base = stem(x)
    moved = type(self).forward(self, stem, x, tau)
    pooled = torch.cat([base.mean(dim=(2, 3)), base.amax(dim=(2, 3)), tau], dim=1)
    g = torch.sigmoid(self.gate(pooled))[:, :, None, None]
    self.last_gate = g.detach().flatten()
    self.live_gate = g.flatten()  # for --supervise-gate
    return base + g * (moved - base)


def add_gate(policy: SigmaPolicy, hidden: int = 0) -> nn.Module:
    """The gate on the policy's tau stem: linear (``hidden`` 0) or an MLP with one GELU
    layer of ``hidden`` units (whether a distractor is present depends on the colours
    seen *and* the instruction: an interaction a linear gate cannot express)."""
    stem_tau = policy.vision.stem_tau
    width = stem_tau.film[-1].out_features // 2
    n_in = 2 * width + policy.dims.d_model
    last = nn.Linear(hidden or n_in, 1)
    nn.init.zeros_(last.weight)
    nn.init.constant_(last.bias, 2.0)
    # the linear gate keeps the layout of the first run's saved stem (gate.weight, gate.bias)
    stem_tau.gate = nn.Sequential(nn.Linear(n_in, hidden), nn.GELU(), last) if hidden else last
    stem_tau.forward = types.MethodType(gated_forward, stem_tau)
    names = {f"vision.stem_tau.gate.{n}" for n, _ in stem_tau.gate.named_parameters()}
    policy.trainable_at_build = policy.trainable_at_build | names
    return stem_tau


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("policy")
    parser.add_argument("out")
    parser.add_argument("--visits", nargs="*", default=[])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--gate-hidden", type=int, default=0, help="an MLP gate of H units")
    parser.add_argument(
        "--supervise-gate",
        type=float,
        default=0.0,
        help="W > 0: also W * BCE(g, whether the render has anything to remove)",
    )
    parser.add_argument("--eval-shards")
    parser.add_argument("--eval-episodes", type=int, default=100)
    parser.add_argument("--eval-seed", type=int, default=10_050)
    parser.add_argument("--report")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    out = Path(args.out)
    policy = SigmaPolicy.from_pretrained(args.policy).eval()
    stem_tau = add_gate(policy, args.gate_hidden)
    saved = out / "stem.safetensors"
    if saved.is_file():
        stem_tau.load_state_dict(load_file(str(saved)))
    else:
        states = load(args.visits[0])
        for path in args.visits[1:]:
            states = states + load(path)
        extra = gate_loss(stem_tau, states, args.supervise_gate) if args.supervise_gate else None
        log = fit_declutter(policy, states, args.steps, extra_loss=extra)
        out.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in stem_tau.state_dict().items()}, str(saved))
        (out / "fit.json").write_text(json.dumps({"states": len(states), "log": log}, indent=1))
    if args.eval_shards:
        from sigma_sim.rollout import rollout

        gates: list[float] = []
        act = policy.act

        def act_and_log(batch, m_prev=None):  # type: ignore[no-untyped-def]
            result = act(batch, m_prev)
            gates.extend(stem_tau.last_gate.tolist())
            return result

        policy.act = act_and_log
        meta = json.loads((Path(args.eval_shards) / "meta.json").read_text())
        results = rollout(
            policy, meta, args.eval_episodes, seed=args.eval_seed, max_seconds=10.0, workers=1
        )
        report = Path(args.report)
        report.mkdir(parents=True, exist_ok=True)
        write_report(report, "declutter-gate", results, vars(args))
        mean = sum(gates) / max(len(gates), 1)
        (report / "gate.json").write_text(json.dumps({"mean_gate": mean, "n": len(gates)}))
        print(json.dumps({"mean_gate": round(mean, 4), "n": len(gates)}))


if __name__ == "__main__":
    main()
