"""``sigma train``: the training loop of both stages, with exact resume.

One optimizer step = ``grad_accum`` micro-batches. Stage ``base`` minimises
TRAF on the tau = 0 actions; stage ``sigma`` minimises :func:`sigma_objective`
(TRAF on ``a_base + Δa`` plus the ramped TSAC terms). Non-finite losses skip
the step (the optimizer is not touched); ``max_bad_steps`` in a row abort.

Run directory::

    metrics.jsonl                one JSON row per optimizer step (Table 1 columns, lr, ...)
    checkpoints/step_000100/     model.safetensors + sigma.json (SigmaPolicy.save_pretrained)
                                 trainer.safetensors  optimizer moments + RNG state
                                 trainer.json         step, data position, schedule, ...
    last                         names the newest complete checkpoint
    policy/                      the final weights (SigmaPolicy.from_pretrained, or the
                                 ``path`` of a ``base_policy: checkpoint`` for stage sigma)
    best/                        the weights with the lowest validation L_act so far

Every ``val_every`` steps (and at the end) the val split's mean TRAF ``L_act``
is logged as ``val_L_act`` in that step's row.

Checkpoints are written to a temporary directory and renamed, so a kill at any
moment leaves the previous one intact; ``resume=True`` restores weights,
optimizer, schedule, RNG and data position, and the run continues exactly as
an uninterrupted one (bit-identical weights on CPU, tested).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from sigma_core.data import ShardDataset, make_loader
from sigma_core.data.loader import EpochSampler, collate
from sigma_core.errors import SigmaUserError
from sigma_core.fileio import atomic_write_text
from sigma_core.losses import LossConfig, sigma_objective, traf
from sigma_core.optim import make_optimizer
from sigma_core.policy import SigmaPolicy, build_policy
from sigma_core.spec import SigmaSpec
from sigma_core.stages import configure_stage


@dataclass
class TrainResult:
    """What a run did: steps taken, last metrics, where the final checkpoint is."""

    steps: int
    last: dict[str, float]
    checkpoint: Path
    skipped: int


class Trainer:
    """Train ``spec`` on the shards at ``data`` into ``out`` (see the module docstring)."""

    def __init__(
        self,
        spec: SigmaSpec,
        data: str | Path,
        out: str | Path,
        *,
        steps: int | None = None,
        checkpoint_every: int = 50,
        val_every: int = 50,
        keep_last: int = 2,
        max_bad_steps: int = 5,
        losses: LossConfig | None = None,
    ) -> None:
        self.spec = spec
        self.out = Path(out)
        self.steps = steps or spec.train.steps
        self.every = checkpoint_every
        self.val_every = val_every
        self.best_val = math.inf
        self.keep_last = keep_last
        self.max_bad_steps = max_bad_steps
        self.losses = losses or LossConfig()
        f = spec.model.dims.frame_history
        self.dataset = ShardDataset(data, split="train", frame_history=f)
        self.val = ShardDataset(data, split="val", frame_history=f, verify=False)
        self._check_data()
        torch.manual_seed(spec.train.seed)
        self.policy: SigmaPolicy = build_policy(spec)
        configure_stage(self.policy, spec.train.stage)
        self.optimizer, self.scheduler = make_optimizer(self.policy, spec.train)
        self.step = 0
        self.epoch = 0
        self.position = 0  # samples of the current epoch already consumed

    def _check_data(self) -> None:
        d, meta = self.spec.model.dims, self.dataset.meta
        opts, stats = meta["options"], meta["stats"]
        problems = []
        if len(stats["action"]["mean"]) != d.action_dim:
            problems.append(f"action_dim: data {len(stats['action']['mean'])}, spec {d.action_dim}")
        if len(stats["observation.state"]["mean"]) != d.state_dim:
            problems.append(f"state_dim: data has {len(stats['observation.state']['mean'])}")
        for key, want in (("horizon", d.horizon), ("chunk", d.chunk_horizon)):
            if opts[key] != want:
                problems.append(f"{key}: data {opts[key]}, spec {want}")
        if opts["cameras"] != list(d.cameras):
            problems.append(f"cameras: data {opts['cameras']}, spec {list(d.cameras)}")
        if opts["image_size"] != d.image_size:
            problems.append(f"image_size: data {opts['image_size']}, spec {d.image_size}")
        if problems:
            raise SigmaUserError(
                f"{self.dataset.root} does not match the spec's model.dims: " + "; ".join(problems)
            )

    # ---- data ---------------------------------------------------------------
    def _batches(self):  # type: ignore[no-untyped-def]
        """Micro-batches from the saved position on, epoch after epoch."""
        bs = self.spec.data.batch_size
        while True:
            order = EpochSampler(len(self.dataset), self.spec.train.seed, self.epoch).order()
            while self.position + bs <= len(order):
                idx = order[self.position : self.position + bs]
                self.position += bs
                yield collate([self.dataset[i] for i in idx])
            self.epoch, self.position = self.epoch + 1, 0

    # ---- one optimizer step -------------------------------------------------
    def _loss(self, batch: Any) -> tuple[torch.Tensor, dict[str, float]]:
        if self.spec.train.stage == "base":
            terms = traf(self.policy(batch, telepathy=False).actions, batch.targets, self.losses)
            return terms.total, {
                "loss": terms.total.item(),
                "L_act": terms.l_act.item(),
                "L_act_hard": terms.l_hard.item(),
            }
        m_prev = self.policy.memory.initial_state(batch.batch_size, batch.state.device)
        out = self.policy(batch, m_prev)
        return sigma_objective(out, batch.targets, m_prev, self.step, self.losses)

    def train(
        self, resume: bool = False, on_step: Callable[[dict[str, float]], None] | None = None
    ) -> TrainResult:
        """Run until ``steps`` optimizer steps; resume from the newest checkpoint if asked.

        ``on_step(row)`` is called after every optimizer step with the logged row.
        """
        self.out.mkdir(parents=True, exist_ok=True)
        if resume:
            self._restore()
        elif (self.out / "last").exists():
            raise SigmaUserError(f"{self.out} holds a run already; pass --resume or a new --out")
        self.policy.train()
        batches = self._batches()
        bad, skipped, row = 0, 0, {}
        accum = self.spec.train.grad_accum
        while self.step < self.steps:
            t0 = time.perf_counter()
            self.optimizer.zero_grad(set_to_none=True)
            rows, finite = [], True
            for _ in range(accum):
                loss, r = self._loss(next(batches))
                if not torch.isfinite(loss):
                    finite = False
                    break
                (loss / accum).backward()
                rows.append(r)
            if not finite:
                bad, skipped = bad + 1, skipped + 1
                if bad >= self.max_bad_steps:
                    raise SigmaUserError(
                        f"{bad} optimizer steps in a row had a non-finite loss (step {self.step});"
                        f" the last good checkpoint is {self._last()}; lower train.lr"
                    )
                continue
            bad = 0
            params = [p for p in self.policy.parameters() if p.requires_grad]
            grad_norm = torch.nn.utils.clip_grad_norm_(params, self.spec.train.max_grad_norm)
            lr = self.optimizer.param_groups[0]["lr"]
            self.optimizer.step()
            self.scheduler.step()
            self.step += 1
            row = {k: sum(r[k] for r in rows) / len(rows) for k in rows[0]}
            row |= {
                "step": self.step,
                "lr": lr,
                "grad_norm": float(grad_norm),
                "seconds": time.perf_counter() - t0,
            }
            if len(self.val) and (self.step % self.val_every == 0 or self.step == self.steps):
                row["val_L_act"] = self.validate()
                if row["val_L_act"] < self.best_val:
                    self.best_val = row["val_L_act"]
                    self.policy.save_pretrained(self.out / "best")
            with open(self.out / "metrics.jsonl", "a") as f:
                f.write(json.dumps(row) + "\n")
            if on_step:
                on_step(row)
            if self.step % self.every == 0 or self.step == self.steps:
                self._save()
        if self.step == self.steps:
            # the final weights as a plain policy directory (a base_policy: checkpoint path)
            self.policy.save_pretrained(self.out / "policy")
        return TrainResult(self.step, row, self._last(), skipped)

    @torch.no_grad()
    def validate(self) -> float:
        """Mean TRAF ``L_act`` over the val split (eval mode; training RNG untouched)."""
        total, n = 0.0, 0
        telepathy = self.spec.train.stage == "sigma"
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.spec.train.seed)  # the same sampler noise every time
            self.policy.eval()
            for batch in make_loader(self.val, self.spec.data.batch_size, shuffle=False):
                actions = self.policy(batch, telepathy=telepathy).actions
                total += traf(actions, batch.targets, self.losses).l_act.item() * batch.batch_size
                n += batch.batch_size
            self.policy.train()
        return total / n

    # ---- checkpoints --------------------------------------------------------
    def _last(self) -> Path:
        name = (self.out / "last").read_text().strip() if (self.out / "last").exists() else ""
        return self.out / "checkpoints" / name

    def _save(self) -> None:
        ckpts = self.out / "checkpoints"
        ckpts.mkdir(exist_ok=True)
        name = f"step_{self.step:06d}"
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=ckpts))
        try:
            self.policy.save_pretrained(tmp / "policy")
            tensors, meta = _optimizer_tensors(self.optimizer)
            tensors["rng.torch"] = torch.get_rng_state()
            save_file(tensors, str(tmp / "trainer.safetensors"))
            state = {
                "step": self.step,
                "epoch": self.epoch,
                "position": self.position,
                "best_val": None if math.isinf(self.best_val) else self.best_val,
                "scheduler": {
                    k: v for k, v in self.scheduler.state_dict().items() if k != "lr_lambdas"
                },
                "optimizer": meta,
            }
            (tmp / "trainer.json").write_text(json.dumps(state, indent=1))
            final = ckpts / name
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        atomic_write_text(self.out / "last", name + "\n")
        done = sorted(p for p in ckpts.iterdir() if p.name.startswith("step_"))
        for old in done[: -self.keep_last]:
            shutil.rmtree(old, ignore_errors=True)

    def _restore(self) -> None:
        if not (self.out / "last").exists():
            raise SigmaUserError(f"{self.out}: nothing to resume (no checkpoint yet)")
        ckpt = self._last()
        from safetensors.torch import load_model

        load_model(self.policy, str(ckpt / "policy" / "model.safetensors"))
        state = json.loads((ckpt / "trainer.json").read_text())
        tensors = load_file(str(ckpt / "trainer.safetensors"))
        torch.set_rng_state(tensors.pop("rng.torch"))
        _load_optimizer(self.optimizer, tensors, state["optimizer"])
        sched = self.scheduler.state_dict() | state["scheduler"]
        self.scheduler.load_state_dict(sched)
        self.step, self.epoch, self.position = state["step"], state["epoch"], state["position"]
        self.best_val = math.inf if state.get("best_val") is None else state["best_val"]
        with open(self.out / "metrics.jsonl") as f:  # drop rows logged after that checkpoint
            rows = [r for r in f if json.loads(r)["step"] <= self.step]
        atomic_write_text(self.out / "metrics.jsonl", "".join(rows))


def _optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Optimizer state as safetensors tensors + JSON (no pickle)."""
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"opt.{idx}.{k}"] = v.contiguous()
            else:
                scalars[f"{idx}.{k}"] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _load_optimizer(opt: torch.optim.Optimizer, tensors: dict, meta: dict) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, v in tensors.items():
        _, idx, k = key.split(".", 2)
        state.setdefault(int(idx), {})[k] = v
    for key, v in meta["scalars"].items():
        idx, k = key.split(".", 1)
        state.setdefault(int(idx), {})[k] = v
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
