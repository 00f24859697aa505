"""Can the instruction make the base's vision ignore the distractors? (issue 21, a prototype)

    python benchmarks/telepathy/declutter.py BASE SHARDS OUT [--episodes 150 --steps 1500
        --batch-size 32 --lr 3e-4 --eval-episodes 50 --eval-seed 10000 --eval-shards S
        --report DIR --also CLEAN_SHARDS --also-episodes 100 --workers 2]

The oracle ``unseen_distractors.py`` says the frozen base, trained on one-cube scenes,
succeeds 48% in the (clear) transfer scenes when it cannot see the distractors, against
26% when it can. This asks whether a pathway conditioned on the instruction can buy
that without locating anything, by distillation towards a scene the base already
handles. The simulator gives the target for free: the same state rendered with the
distractors transparent.

1. Visit: the frozen base runs closed-loop in SHARDS' scenes (``--episodes``, seeds
   50,000 on, disjoint from the evaluation's 10,000 + i); at every planning step the
   images it read are kept with the same instant rendered without the distractors.
   ``--also`` visits a second recording's scenes too (``--also-episodes``, seeds 60,000
   on): in one-cube scenes the target is the image itself, so the student learns to
   leave a scene with nothing to remove as the base sees it.
2. Fit a student stem: a trainable copy of the base's convolutional stem, FiLM-modulated
   after each layer by the instruction, ``F' = F (1 + gamma(E[t])) + beta(E[t])``
   (``E`` a learned embedding of the instruction, what tau carries; FiLM zero-initialized,
   so the student starts as the base), on

       L = ||V(x; student) - V(x_clean; base)||^2 + ||s_hat(x; student) - s_hat(x_clean; base)||^2

   (``V`` the vision's pooled tokens, ``s_hat`` the base's scene estimate; everything but
   the student frozen).
3. Closed loop on ``--eval-episodes`` seeds from ``--eval-seed`` (as ``sigma eval --sim``;
   in ``--eval-shards``' scenes, default SHARDS') with the student's stem in the base,
   against the base and its two oracles on the same seeds (their reports, ``paired.py``).
   A second call with the same OUT evaluates the saved student again (new seeds,
   other scenes: ``--report`` elsewhere).

A prototype of the design the clear-scene results propose (a tau-gated stem on the
telepathy path, the tau = 0 path the frozen base); here the student replaces the base's
stem outright and the instruction's embedding stands in for tau. One process, one torch
thread. Writes ``OUT/student.safetensors``, ``OUT/visited.safetensors`` (reused when
there), ``OUT/fit.json`` and ``OUT/report.json`` (``estimated_oracle.write_report``,
policy ``declutter``).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).parents[1] / "base_levers"))
sys.path.insert(0, str(Path(__file__).parent))
from estimated_oracle import write_report

from sigma_core import SigmaPolicy
from sigma_core.types import SigmaBatch, VisionOutput
from sigma_sim.scene import hide_distractors

CAMERA_KEYS = {"overhead": "overhead_camera", "wrist": "wrist_camera"}


class FilmStem(nn.Module):
    """A trainable copy of a conv stem (``Conv, GELU, Conv, GELU``), FiLM after each GELU
    by ``E[task]``; zero-initialized FiLM, so it starts as the stem it copies. ``task``
    (one index per image) is set before each forward."""

    def __init__(self, stem: nn.Sequential, tasks: int, d: int = 32) -> None:
        super().__init__()
        self.stem = copy.deepcopy(stem).requires_grad_(True)
        widths = [m.out_channels for m in self.stem if isinstance(m, nn.Conv2d)]
        self.embed = nn.Embedding(tasks, d)
        self.films = nn.ModuleList(nn.Linear(d, 2 * w) for w in widths)
        for film in self.films:
            nn.init.zeros_(film.weight)
            nn.init.zeros_(film.bias)
        self.task = torch.zeros(0, dtype=torch.long)

    def forward(self, x: Tensor) -> Tensor:
        e = self.embed(self.task)
        films = iter(self.films)
        for layer in self.stem:
            x = layer(x)
            if isinstance(layer, nn.GELU):
                gamma, beta = next(films)(e)[:, :, None, None].chunk(2, dim=1)
                x = x * (1 + gamma) + beta
        return x


def task_ids(texts: list[str], tasks: list[str], per_sample: int) -> Tensor:
    """Each text's index in ``tasks``, repeated for the sample's images."""
    return torch.tensor([tasks.index(t) for t in texts]).repeat_interleave(per_sample)


class Decluttered(SigmaPolicy):
    """The base with its stem replaced by a :class:`FilmStem` told the instruction."""

    tasks: list[str]

    def encode_vision(self, batch: SigmaBatch) -> tuple[VisionOutput, Tensor, Tensor | None]:
        per_sample = batch.images.shape[1] * batch.images.shape[2]
        self.vision.stem.task = task_ids(batch.texts, self.tasks, per_sample)
        return super().encode_vision(batch)


def visit(policy: SigmaPolicy, meta: dict, episodes: int, seed: int) -> dict[str, Tensor]:
    """Closed-loop states of ``policy``: the images it read, the same instant without the
    distractors, its joints and the instruction (an index into sorted tasks)."""
    import sigma_sim.scene
    from sigma_sim.rollout import rollout

    cameras = policy.dims.cameras
    tasks = sorted(meta["tasks"])
    current: dict[str, Any] = {}
    original = sigma_sim.scene.reset_episode

    def reset(env: Any, seed: int, colors: list[str]) -> Any:
        current["env"] = env
        return original(env, seed, colors)

    out: dict[str, list[Tensor]] = {"images": [], "clean": [], "state": [], "task": []}

    def record(batch: SigmaBatch) -> None:
        env = current["env"]
        model = env.model
        alpha = model.geom_rgba[:, 3].copy()
        hide_distractors(env)
        try:
            obs = env._get_obs()  # this instant, rendered without the distractors
        finally:
            model.geom_rgba[:, 3] = alpha
        clean = torch.stack(
            [torch.from_numpy(obs[CAMERA_KEYS[c]].copy()).permute(2, 0, 1) for c in cameras]
        )[None, :, None]  # (1, C, F=1, 3, H, W) uint8
        out["images"].append((batch.images * 255).round().to(torch.uint8))
        out["clean"].append(clean)
        out["state"].append(batch.state)
        out["task"].append(torch.tensor([tasks.index(t) for t in batch.texts]))

    sigma_sim.scene.reset_episode = reset
    try:
        rollout(policy, meta, episodes, seed=seed, max_seconds=10.0, workers=1, on_plan=record)
    finally:
        sigma_sim.scene.reset_episode = original
    return {k: torch.cat(v) for k, v in out.items()}


def visited(
    policy: SigmaPolicy, meta: dict, episodes: int, seed: int, cache: Path
) -> dict[str, Tensor]:
    """:func:`visit`, kept in ``cache`` (safetensors) and read back when it is there."""
    if cache.is_file():
        return load_file(cache)
    data = visit(policy, meta, episodes, seed)
    save_file(data, cache)
    return data


def fit(
    base: SigmaPolicy,
    student: FilmStem,
    data: dict[str, Tensor],
    steps: int,
    batch: int,
    lr: float,
) -> list[dict[str, float]]:
    """Distil: the base's vision with ``student`` as its stem on the cluttered images
    towards the frozen base on the clean ones (pooled tokens and s_hat)."""
    frozen_stem = base.vision.stem
    n = len(data["task"])
    per_sample = data["images"].shape[1] * data["images"].shape[2]
    with torch.no_grad():  # the teacher's targets, once
        targets = [
            base.estimate_scene(
                data["clean"][i : i + 128].float() / 255, data["state"][i : i + 128]
            )
            for i in range(0, n, 128)
        ]
    tokens_t = torch.cat([t[0].tokens for t in targets])
    s_hat_t = torch.cat([t[1] for t in targets])
    base.vision.stem = student
    optim = torch.optim.Adam([p for p in student.parameters() if p.requires_grad], lr=lr)
    g = torch.Generator().manual_seed(0)
    log = []
    try:
        for step in range(steps):
            idx = torch.randint(n, (batch,), generator=g)
            student.task = data["task"][idx].repeat_interleave(per_sample)
            vis, s_hat = base.estimate_scene(data["images"][idx].float() / 255, data["state"][idx])
            loss_v = (vis.tokens - tokens_t[idx]).pow(2).mean()
            loss_s = (s_hat - s_hat_t[idx]).pow(2).mean()
            optim.zero_grad()
            (loss_v + loss_s).backward()
            optim.step()
            if step % 100 == 0 or step == steps - 1:
                log.append({"step": step, "tokens": loss_v.item(), "s_hat": loss_s.item()})
                print(json.dumps(log[-1]), flush=True)
    finally:
        base.vision.stem = frozen_stem
    return log


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base")
    parser.add_argument("shards")
    parser.add_argument("out")
    parser.add_argument("--episodes", type=int, default=150)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--eval-episodes", type=int, default=50)
    parser.add_argument(
        "--also", help="shards whose scenes are visited too (seeds 60,000 on), e.g. one-cube"
    )
    parser.add_argument("--also-episodes", type=int, default=100)
    parser.add_argument("--eval-seed", type=int, default=10_000, help="episode i: seed + i")
    parser.add_argument("--eval-shards", help="evaluate in these shards' scenes (default SHARDS)")
    parser.add_argument("--report", help="where report.json goes (default OUT)")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    from sigma_sim.rollout import rollout

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = json.loads((Path(args.shards) / "meta.json").read_text())
    tasks = sorted(meta["tasks"])
    base = SigmaPolicy.from_pretrained(args.base).eval().requires_grad_(False)
    t0 = time.perf_counter()
    data = visited(base, meta, args.episodes, 50_000, out / "visited.safetensors")
    if args.also:  # states where the target is the image itself (e.g. one-cube scenes)
        also_meta = json.loads((Path(args.also) / "meta.json").read_text())
        also_cache = out / "visited-also.safetensors"
        also = visited(base, also_meta, args.also_episodes, 60_000, also_cache)
        data = {k: torch.cat([data[k], also[k]]) for k in data}
    t1 = time.perf_counter()
    student = FilmStem(base.vision.stem, len(tasks))
    if (out / "student.safetensors").is_file():  # fitted already: evaluate it again
        student.load_state_dict(load_file(out / "student.safetensors"))
    else:
        log = fit(base, student, data, args.steps, args.batch_size, args.lr)
        t2 = time.perf_counter()
        save_file(student.state_dict(), out / "student.safetensors")
        fitted = {"states": len(data["task"]), "visit_s": t1 - t0, "fit_s": t2 - t1, "log": log}
        (out / "fit.json").write_text(json.dumps(fitted, indent=1))
    base.vision.stem = student.requires_grad_(False)
    base.__class__ = Decluttered
    base.tasks = tasks
    if args.eval_shards:
        meta = json.loads((Path(args.eval_shards) / "meta.json").read_text())
    results = rollout(
        base, meta, args.eval_episodes, seed=args.eval_seed, max_seconds=10.0, workers=args.workers
    )
    report = Path(args.report or out)
    report.mkdir(parents=True, exist_ok=True)
    write_report(report, "declutter", results, vars(args))


if __name__ == "__main__":
    main()
