"""The oracle driven by a vision estimate of the scene state: is a camera-only base within reach?

    python benchmarks/base_levers/estimated_oracle.py ORACLE_RUN PROBE.safetensors PROBE_SPEC \
        --data SHARDS --sim 50 --max-seconds 10 --out EVAL [--noise 0.0]

The oracle (``configs/oracle-state.yaml``) picks and places when it is told where the cube
and the goal are. Here it is told what a vision probe (``vision_probe.py --target all
--save``: a vision workspace and a head trained only to regress the normalized
``observation.environment_state`` from the cameras) *sees* instead: at every replanning
step the batch's true scene state is replaced with the probe's estimate from the same
images. If this succeeds, a base that estimates the scene state from its cameras and acts
on the estimate (the oracle's policy on a learned state) needs only the probe's compute;
if it fails, the estimate is not precise enough and the table says by how much.

``--noise SIGMA`` instead replaces the state with the truth plus Gaussian noise of SIGMA
(normalized units, drawn per replan): the oracle's tolerance to estimation error.
``--blank 3,4`` sets those entries to their training mean (0 normalized) after either:
which entries the oracle needs.

Writes ``EVAL/report.json`` in the shape ``table.py`` reads (``closed_loop`` and
``groups``), one torch thread, episodes seeded ``10000 + i`` like ``sigma eval --sim``.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import replace
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import Tensor, nn

from sigma_core import SigmaBatch, build_component, get_registry, load_spec
from sigma_core.data import environment_normalizer, read_meta
from sigma_core.eval.replay import open_source
from sigma_core.layers import scene_head
from sigma_core.model.policy import SigmaPolicy
from sigma_sim.rollout import rollout


class SceneProbe(nn.Module):
    """``vision_probe.py --target all``'s network: scene state = head(mean(vision tokens))."""

    def __init__(self, spec_path: str, width: int) -> None:
        super().__init__()
        spec = load_spec(spec_path)
        self.dims = spec.model.dims
        self.vision = build_component("vision", spec.model.vision, self.dims, get_registry())
        self.auxiliary_state = scene_head(self.dims.d_model, width)

    def forward(self, images: Tensor) -> Tensor:
        state = torch.zeros(images.shape[0], self.dims.vision_state_dim)
        return self.auxiliary_state(self.vision(images, state).tokens.mean(dim=1))


class Renormalized(nn.Module):
    """A probe trained on other shards: its estimate in the oracle's normalization."""

    def __init__(self, probe: nn.Module, probe_meta: dict, oracle_meta: dict, width: int) -> None:
        super().__init__()
        self.probe = probe
        self.source = environment_normalizer(probe_meta, "probe shards", width)
        self.target = environment_normalizer(oracle_meta, "oracle shards", width)

    def forward(self, images: Tensor) -> Tensor:
        return self.target.normalize(self.source.denormalize(self.probe(images)))


class EstimatedOracle(SigmaPolicy):
    """An oracle whose scene state is the probe's estimate (or the truth plus noise)."""

    scene_probe: nn.Module | None
    noise: float
    blank: list[int]

    def act(self, batch: SigmaBatch, m_prev: Tensor | None = None) -> tuple[Tensor, Tensor]:
        truth = batch.environment_state
        assert truth is not None
        if self.scene_probe is not None:
            estimate = self.scene_probe(batch.images).to(truth.dtype)
        else:
            estimate = truth + self.noise * torch.randn_like(truth)
        estimate[:, self.blank] = 0.0
        return super().act(replace(batch, environment_state=estimate), m_prev)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("oracle")
    parser.add_argument("probe", help="vision_probe.py --save file, or 'none' with --noise")
    parser.add_argument("probe_spec", help="the spec the probe was trained with")
    parser.add_argument("--data", required=True, help="the oracle's shards")
    parser.add_argument("--probe-data", help="the probe's shards, when not --data")
    parser.add_argument("--sim", type=int, default=50)
    parser.add_argument("--max-seconds", type=float, default=10.0)
    parser.add_argument("--noise", type=float, default=0.0)
    parser.add_argument("--blank", default="", help="comma-separated entries set to 0")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--name", default="estimated-oracle")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    meta = read_meta(args.data)
    policy = SigmaPolicy.from_pretrained(open_source(args.oracle).directory).eval()
    width = policy.dims.environment_state_dim
    if not width:
        raise SystemExit(f"{args.oracle}: not an oracle (model.dims.environment_state_dim is 0)")
    policy.__class__ = EstimatedOracle
    policy.noise = args.noise
    policy.blank = [int(i) for i in args.blank.split(",") if i]
    if args.probe == "none":
        policy.scene_probe = None
    else:
        probe = SceneProbe(args.probe_spec, width)
        probe.load_state_dict(load_file(args.probe))
        if args.probe_data:
            probe = Renormalized(probe, read_meta(args.probe_data), meta, width)
        policy.scene_probe = probe.eval()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = rollout(
        policy,
        meta,
        args.sim,
        max_seconds=args.max_seconds,
        workers=args.workers,
        journal=out / "episodes.jsonl",
        progress=True,
    )
    write_report(out, args.name, results, vars(args))


def closed_loop_parser(doc: str, policy: str) -> argparse.ArgumentParser:
    """The arguments the closed-loop diagnostics share: ``POLICY SHARDS OUT`` (``policy``
    names the first) and the episodes as ``sigma eval --sim`` draws them."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument(policy)
    parser.add_argument("shards")
    parser.add_argument("out")
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--seed", type=int, default=10_000, help="episode i is seed + i")
    parser.add_argument("--max-seconds", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=2)
    return parser


def closed_loop(policy: SigmaPolicy, meta: dict, args: argparse.Namespace) -> list:
    """The closed loop :func:`closed_loop_parser`'s arguments ask for."""
    return rollout(
        policy,
        meta,
        args.episodes,
        seed=args.seed,
        max_seconds=args.max_seconds,
        workers=args.workers,
    )


def write_report(out: Path, name: str, results: list, settings: dict) -> None:
    """``out/report.json`` in the shape ``table.py`` reads (closed-loop episodes only),
    written atomically; prints the success count."""
    episodes = [r.as_dict() for r in results]
    report = {
        "closed_loop": {name: {"episodes_detail": episodes}},
        "groups": {name: {"metrics": {}}},
        "settings": settings,
    }
    tmp = out / "report.json.tmp"
    tmp.write_text(json.dumps(report, indent=1))
    os.replace(tmp, out / "report.json")
    print(f"{name}: success {sum(e['success'] for e in episodes)}/{len(episodes)}")


if __name__ == "__main__":
    main()
