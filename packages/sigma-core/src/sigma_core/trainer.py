"""``sigma train``: the training loop of both stages, one code path through accelerate.

One optimizer step = ``grad_accum`` micro-batches of ``data.batch_size`` per
process. Stage ``base`` minimises TRAF on the tau = 0 actions; stage ``sigma``
minimises :func:`sigma_objective` (TRAF on ``a_base + Δa`` plus the ramped TSAC
terms). Non-finite losses or gradients skip the step (the optimizer is not
touched); ``max_bad_steps`` in a row abort.

The same loop runs on one CPU, one GPU, or data-parallel under ``accelerate
launch`` / ``torchrun``: each process takes its own slice of every global batch
(``batch_size x num_processes`` samples), gradients are averaged by DDP, and only
the main process validates, logs and writes files. TRAF's hard set and TSAC's
in-batch negatives are per process, as on the paper's single GPU.

Run directory::

    metrics.jsonl       one JSON row per optimizer step (Table 1 columns, lr, grad_norm,
                        seconds, data_seconds; val_L_act every ``val_every`` steps)
    tensorboard/        the same scalars, with ``tensorboard=True``
    checkpoints/step_N/ heads + PEFT adapter + spec + trainer state (see train_state)
    last                names the newest complete checkpoint
    policy/             the final weights (SigmaPolicy.from_pretrained; the ``path``
                        of a ``base_policy: checkpoint`` for stage sigma)
    best/               the weights with the lowest validation L_act so far

Checkpoints are written to a temporary directory and renamed, so a kill at any
moment leaves the previous one intact; ``resume=True`` restores weights,
optimizer, schedule, RNG and data position, and the run continues exactly as an
uninterrupted one (bit-identical weights on CPU, tested by killing a process).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from sigma_core import train_state
from sigma_core.checkpoint import WEIGHTS, init_from_checkpoint, read_meta
from sigma_core.data import ShardDataset, make_loader
from sigma_core.data.loader import EpochSampler, collate
from sigma_core.errors import SigmaUserError
from sigma_core.fileio import atomic_write_text, sha256_file
from sigma_core.losses import (
    LossConfig,
    per_sample_mse,
    sigma_objective,
    traf,
    traf_from_losses,
)
from sigma_core.optim import make_optimizer
from sigma_core.policy import SigmaPolicy, build_policy
from sigma_core.spec import SigmaSpec
from sigma_core.stages import configure_stage
from sigma_core.types import ActionSet, SigmaBatch

DEVICES = ("auto", "cpu", "cuda", "mps")


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
        device: str = "auto",
        tensorboard: bool = False,
    ) -> None:
        # overrides go into the spec, so the schedule follows --steps and checkpoints
        # record what actually ran
        update: dict[str, Any] = {"steps": steps} if steps else {}
        if losses is not None:
            update["losses"] = losses
        if update:
            spec = spec.model_copy(
                update={"train": spec.train.model_copy(update=update)}, deep=True
            )
        self.spec = spec
        self.out = Path(out)
        self.steps = spec.train.steps
        self.every = checkpoint_every
        self.val_every = val_every
        self.best_val = math.inf
        self.keep_last = keep_last
        self.max_bad_steps = max_bad_steps
        self.losses = spec.train.losses
        self.tensorboard = tensorboard
        self.accelerator = make_accelerator(device)
        self.device = self.accelerator.device
        self.rank = self.accelerator.process_index
        self.world = self.accelerator.num_processes
        self.main = self.accelerator.is_main_process
        self.autocast_dtype = autocast_dtype(spec.train.precision, self.device)
        f = spec.model.dims.frame_history
        self.dataset = ShardDataset(data, split="train", frame_history=f)
        self.val = ShardDataset(data, split="val", frame_history=f, verify=False)
        self._check_data()
        torch.manual_seed(spec.train.seed)
        self.policy: SigmaPolicy = build_policy(spec)
        self.init: dict[str, str] | None = None
        self.init_counts: dict[str, int] = {}
        if source := init_source(spec):
            self.init_counts = init_from_checkpoint(self.policy, source)
            self.init = {"path": source, "sha256": sha256_file(Path(source) / WEIGHTS)}
        configure_stage(self.policy, spec.train.stage)
        # DDP-wrapped when several processes run; self.policy stays the plain module
        self.objective = StageObjective(self.policy, spec.train.stage, self.losses)
        self.model = self.accelerator.prepare_model(self.objective)
        self.optimizer, self.scheduler = make_optimizer(self.policy, spec.train)
        self.step = 0
        self.epoch = 0
        self.position = 0  # samples of the current epoch consumed by all processes together

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
        if len(self.dataset) < self.spec.data.batch_size * self.world:
            raise SigmaUserError(
                f"{self.dataset.root}: {len(self.dataset)} train windows, fewer than one batch"
                f" ({self.spec.data.batch_size} x {self.world} processes)"
            )

    # ---- data ---------------------------------------------------------------
    def _batches(self) -> Iterator[SigmaBatch]:
        """This process's micro-batches from the saved position on, epoch after epoch."""
        bs = self.spec.data.batch_size
        stride = bs * self.world  # one global batch; this process takes slice ``rank``
        while True:
            order = EpochSampler(len(self.dataset), self.spec.train.seed, self.epoch).order()
            while self.position + stride <= len(order):
                lo = self.position + self.rank * bs
                self.position += stride
                yield collate([self.dataset[i] for i in order[lo : lo + bs]]).to(self.device)
            self.epoch, self.position = self.epoch + 1, 0

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    # ---- one optimizer step -------------------------------------------------
    def _loss(self, batch: SigmaBatch) -> tuple[torch.Tensor, dict[str, float]]:
        with self._autocast():
            return self.model(batch, self.step)

    def _all(self, ok: bool) -> bool:
        """Whether ``ok`` holds on every process (one all-gather when distributed)."""
        if self.world == 1:
            return ok
        return bool(self.accelerator.gather(torch.tensor([ok], device=self.device)).all())

    def _mean_row(self, row: dict[str, float]) -> dict[str, float]:
        if self.world == 1:
            return row
        values = torch.tensor(list(row.values()), dtype=torch.float64, device=self.device)
        mean = self.accelerator.reduce(values, "mean")
        return dict(zip(row, mean.tolist(), strict=True))

    def _optimizer_step(self, batches: Iterator[SigmaBatch]) -> dict[str, float] | None:
        """Accumulate ``grad_accum`` micro-batches and step; ``None`` if skipped (non-finite)."""
        t0 = time.perf_counter()
        accum = self.spec.train.grad_accum
        self.optimizer.zero_grad(set_to_none=True)
        rows, finite, waited = [], True, 0.0
        for i in range(accum):
            t = time.perf_counter()
            batch = next(batches)
            waited += time.perf_counter() - t
            sync = i == accum - 1  # DDP all-reduces gradients on the last micro-batch only
            with contextlib.nullcontext() if sync else self.accelerator.no_sync(self.model):
                loss, r = self._loss(batch)
                finite = finite and bool(torch.isfinite(loss))
                # backward even on a bad loss, so every process runs the same collectives;
                # the gradients are dropped below
                self.accelerator.backward(loss / accum)
            rows.append(r)
        params = [p for p in self.policy.parameters() if p.requires_grad]
        grad_norm = torch.nn.utils.clip_grad_norm_(params, self.spec.train.max_grad_norm)
        if not self._all(finite and bool(torch.isfinite(grad_norm))):
            self.optimizer.zero_grad(set_to_none=True)
            return None
        lr = self.optimizer.param_groups[0]["lr"]
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        row = self._mean_row({k: sum(r[k] for r in rows) / len(rows) for k in rows[0]})
        return row | {
            "step": self.step,
            "lr": lr,
            "grad_norm": float(grad_norm),
            "seconds": time.perf_counter() - t0,
            "data_seconds": waited,
        }

    def train(
        self, resume: bool = False, on_step: Callable[[dict[str, float]], None] | None = None
    ) -> TrainResult:
        """Run until ``steps`` optimizer steps; resume from the newest checkpoint if asked.

        ``on_step(row)`` is called (main process) after every optimizer step with the row.
        """
        if self.main:
            self.out.mkdir(parents=True, exist_ok=True)
        if resume:
            self._restore()
        elif (self.out / "last").exists():
            raise SigmaUserError(f"{self.out} holds a run already; pass --resume or a new --out")
        self.policy.train()
        writer = self._writer(resume) if self.main else None
        batches = self._batches()
        bad, skipped, row = 0, 0, {}
        try:
            while self.step < self.steps:
                try:
                    new = self._optimizer_step(batches)
                except torch.OutOfMemoryError:
                    raise SigmaUserError(self._oom_message()) from None
                if new is None:
                    bad, skipped = bad + 1, skipped + 1
                    warnings.warn(
                        f"step {self.step + 1}: non-finite loss or gradient, step skipped"
                        f" ({bad} of at most {self.max_bad_steps} in a row)",
                        RuntimeWarning,
                        stacklevel=2,
                    )
                    if bad >= self.max_bad_steps:
                        raise SigmaUserError(
                            f"{bad} optimizer steps in a row had a non-finite loss or gradient"
                            f" (step {self.step}); the last good checkpoint is {self._last()};"
                            " lower train.lr"
                        )
                    continue
                bad, row = 0, new
                if len(self.val) and (self.step % self.val_every == 0 or self.step == self.steps):
                    self._validate_and_keep_best(row)
                if self.main:
                    with open(self.out / "metrics.jsonl", "a") as f:
                        f.write(json.dumps(row) + "\n")
                    if writer is not None:
                        for key, value in row.items():
                            if key != "step":
                                writer.add_scalar(f"train/{key}", value, self.step)
                    if on_step:
                        on_step(row)
                if self.step % self.every == 0 or self.step == self.steps:
                    self._save()
        finally:
            if writer is not None:
                writer.close()
        if self.step == self.steps and self.main:
            # the final weights as a plain policy directory (a base_policy: checkpoint path)
            self.policy.save_pretrained(self.out / "policy")
        self.accelerator.wait_for_everyone()
        return TrainResult(self.step, row, self._last(), skipped)

    def _writer(self, resume: bool) -> Any:
        if not self.tensorboard:
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise SigmaUserError(
                "--tensorboard needs the tensorboard package:"
                " pip install 'sigma-vla-core[tensorboard]'"
            ) from None
        # purge_step drops events logged after the checkpoint a resumed run restarts from
        purge = self.step + 1 if resume else None
        return SummaryWriter(str(self.out / "tensorboard"), purge_step=purge)

    def _oom_message(self) -> str:
        t, d = self.spec.train, self.spec.data
        return (
            f"out of memory on {self.device} at step {self.step + 1} (data.batch_size"
            f" {d.batch_size} x train.grad_accum {t.grad_accum}, precision {t.precision})."
            " Knobs, cheapest first: lower data.batch_size and raise train.grad_accum"
            " (same effective batch); train.precision: bf16; model.backbone.load_in_4bit:"
            " true; model.backbone.gradient_checkpointing: true; a smaller"
            " model.backbone.lora.r or fewer lora.target_modules. Then --resume from"
            f" {self._last() if (self.out / 'last').exists() else 'the start'}."
        )

    def _validate_and_keep_best(self, row: dict[str, float]) -> None:
        if self.main:
            row["val_L_act"] = self.validate()
            if row["val_L_act"] < self.best_val:
                self.best_val = row["val_L_act"]
                self.policy.save_pretrained(self.out / "best")
        self.accelerator.wait_for_everyone()

    @torch.no_grad()
    def validate(self) -> float:
        """Mean TRAF ``L_act`` over the val split (eval mode; training RNG untouched)."""
        total, n = 0.0, 0
        telepathy = self.spec.train.stage == "sigma"
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.spec.train.seed)  # the same sampler noise every time
            self.policy.eval()
            for batch in make_loader(self.val, self.spec.data.batch_size, shuffle=False):
                batch = batch.to(self.device)
                with self._autocast():
                    actions = self.policy(batch, telepathy=telepathy).actions
                l_act = traf(actions.to(torch.float32), batch.targets, self.losses).l_act
                total += l_act.item() * batch.batch_size
                n += batch.batch_size
            self.policy.train()
        return total / n

    # ---- checkpoints --------------------------------------------------------
    def _last(self) -> Path:
        name = (self.out / "last").read_text().strip() if (self.out / "last").exists() else ""
        return self.out / "checkpoints" / name

    def _save(self) -> None:
        if self.main:
            self._write_checkpoint()
        self.accelerator.wait_for_everyone()

    def _write_checkpoint(self) -> None:
        ckpts = self.out / "checkpoints"
        ckpts.mkdir(exist_ok=True)
        name = f"step_{self.step:06d}"
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=ckpts))
        try:
            train_state.save_trained(self.policy, tmp)
            train_state.write_meta(tmp, self.spec, self.init)
            tensors, meta = train_state.optimizer_tensors(self.optimizer)
            save_file(tensors | train_state.rng_tensors(), str(tmp / train_state.TRAINER_TENSORS))
            state = {
                "step": self.step,
                "epoch": self.epoch,
                "position": self.position,
                "num_processes": self.world,
                "best_val": None if math.isinf(self.best_val) else self.best_val,
                "scheduler": {
                    k: v for k, v in self.scheduler.state_dict().items() if k != "lr_lambdas"
                },
                "optimizer": meta,
            }
            (tmp / train_state.TRAINER_STATE).write_text(json.dumps(state, indent=1))
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
        saved_init = read_meta(ckpt).get("init_from")
        sha = (saved_init or {}).get("sha256"), (self.init or {}).get("sha256")
        if sha[0] != sha[1]:  # the same weights, even if the path is spelled differently
            raise SigmaUserError(
                f"{ckpt}: the run started from init_from {saved_init}, this spec gives"
                f" {self.init}; resume needs the same initial weights"
            )
        train_state.load_trained(self.policy, ckpt)
        state = json.loads((ckpt / train_state.TRAINER_STATE).read_text())
        tensors = load_file(str(ckpt / train_state.TRAINER_TENSORS), device=str(self.device))
        train_state.load_rng({k: v.cpu() for k, v in tensors.items() if k.startswith("rng.")})
        train_state.load_optimizer(self.optimizer, tensors, state["optimizer"])
        sched = self.scheduler.state_dict() | state["scheduler"]
        self.scheduler.load_state_dict(sched)
        self.step, self.epoch, self.position = state["step"], state["epoch"], state["position"]
        self.best_val = math.inf if state.get("best_val") is None else state["best_val"]
        if self.main:  # drop rows logged after that checkpoint
            with open(self.out / "metrics.jsonl") as f:
                rows = [r for r in f if json.loads(r)["step"] <= self.step]
            atomic_write_text(self.out / "metrics.jsonl", "".join(rows))
        self.accelerator.wait_for_everyone()


class StageObjective(nn.Module):
    """``forward(batch, step) -> (loss, logged terms)`` of a stage, as one module.

    Stage ``base``: TRAF over the tau = 0 branches plus ``λ_fuse·L_fuse``
    (:meth:`fusion_loss`): by default TRAF takes the MSE of their
    decoded actions; with ``losses.base_loss: native`` each branch contributes its
    own per-sample training loss (``branch.loss``: token cross-entropy, flow
    matching, MSE for regression heads) to TRAF's weighting and hard set. On the
    simulated data native was worse for the token head (300 steps of base-tiny:
    val L_act 0.53 vs 0.22), so it is opt-in.
    Stage ``sigma``: :func:`sigma_objective` from a zero memory.

    The loss is computed inside ``forward`` so that DDP sees the loss, not the
    policy's outputs: tensors that feed outputs but not the loss (the fused plan's
    weights in stage base) are then correctly found unused.
    """

    def __init__(self, policy: SigmaPolicy, stage: str, losses: LossConfig) -> None:
        super().__init__()
        self.policy, self.stage, self.losses = policy, stage, losses

    def forward(self, batch: SigmaBatch, step: int) -> tuple[torch.Tensor, dict[str, float]]:
        if self.stage == "sigma":
            m_prev = self.policy.memory.initial_state(batch.batch_size, batch.state.device)
            out = self.policy(batch, m_prev)
            return sigma_objective(out, batch.targets, m_prev, step, self.losses)
        native = self.losses.base_loss == "native"
        with torch.no_grad() if native else contextlib.nullcontext():
            actions = self.policy(batch, telepathy=False).actions
        if native:
            terms = traf_from_losses(self.branch_losses(batch), self.losses)
        else:
            terms = traf(actions, batch.targets, self.losses)
        l_fuse = self.fusion_loss(actions, batch.targets.chunk)
        total = terms.total + self.losses.lambda_fuse * l_fuse
        return total, {
            "loss": total.item(),
            "L_act": terms.l_act.item(),
            "L_act_hard": terms.l_hard.item(),
            "L_fuse": l_fuse.item(),
        }

    def fusion_loss(self, actions: ActionSet, target_chunk: torch.Tensor) -> torch.Tensor:
        """``L_fuse = mean_i MSE(fusion(sg(a_vec), sg(a_chk), sg(a_trj))_i, a*_chk,i)``.

        The branch outputs are detached, so only the fusion weights learn from it:
        TRAF is not in the paper's objective for them, and without this term the
        fused plan that the robot executes would keep its initial equal weights.
        """
        a = actions.map(torch.Tensor.detach)
        fused = self.policy.fusion(a.vector, a.chunk, a.trajectory)
        return per_sample_mse(fused, target_chunk).mean()

    def branch_losses(self, batch: SigmaBatch) -> dict[str, torch.Tensor]:
        """Each tau = 0 branch's own per-sample loss against the targets (B,) per scale."""
        q0, target, p = self.policy.tau0_queries(batch), batch.targets, self.policy
        return {
            "vec": p.vector.loss(q0.queries, q0.c_act, target.vector),
            "chk": p.chunk.loss(q0.queries, q0.c_act, target.chunk),
            "trj": p.trajectory.loss(q0.queries, q0.c_act, target.trajectory),
        }


def make_accelerator(device: str = "auto") -> Any:
    """An :class:`accelerate.Accelerator` on ``device`` (auto: CUDA, then MPS, then CPU)."""
    from accelerate import Accelerator, DistributedDataParallelKwargs

    if device not in DEVICES:
        raise SigmaUserError(f"--device {device!r}: choose one of {', '.join(DEVICES)}")
    if device == "cuda" and not torch.cuda.is_available():
        raise SigmaUserError("--device cuda: no CUDA device is visible to torch")
    if device == "mps" and not torch.backends.mps.is_available():
        raise SigmaUserError("--device mps: torch reports MPS unavailable")
    # a stage may leave some trainable tensors without gradient (e.g. fusion weights in
    # stage base); DDP must not wait for them
    ddp = DistributedDataParallelKwargs(find_unused_parameters=True)
    return Accelerator(cpu=device == "cpu", kwargs_handlers=[ddp])


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``train.precision`` on ``device`` (None: full fp32)."""
    bf16_ok = device.type != "cuda" or torch.cuda.is_bf16_supported()
    if precision == "bf16":
        if not bf16_ok:
            raise SigmaUserError(f"train.precision bf16: {device} does not support bfloat16")
        return torch.bfloat16
    if precision == "auto" and device.type == "cuda" and bf16_ok:
        return torch.bfloat16
    return None


def init_source(spec: SigmaSpec) -> str | None:
    """Where the initial weights come from: ``train.init_from``, else (stage sigma) the base.

    Stage sigma trains the telepathy pathway on top of the *trained* tau = 0
    path; starting it from random frozen features would leave the residual
    nothing meaningful to read.
    """
    if spec.train.init_from:
        return spec.train.init_from
    if spec.train.stage == "sigma" and spec.base_policy.type == "checkpoint":
        return str(spec.base_policy.params["path"])
    return None
