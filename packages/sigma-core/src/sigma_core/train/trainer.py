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
    checkpoints/step_N/ heads + PEFT adapter + spec + trainer state (see train.checkpoint)
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
import shutil
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sigma_core._fileio import atomic_write_text, sha256_file
from sigma_core.data import (
    EpochSampler,
    RunDataset,
    ShardDataset,
    base_actions_match,
    check_base_sources,
    check_dims,
    make_loader,
    read_base_actions,
    shard_dims,
)
from sigma_core.errors import SigmaUserError
from sigma_core.model.checkpoint import META, WEIGHTS, init_from_checkpoint, read_meta
from sigma_core.model.policy import SigmaPolicy, build_policy
from sigma_core.spec import SigmaSpec
from sigma_core.train.checkpoint import checkpoint_init, read_checkpoint, write_checkpoint
from sigma_core.train.losses import LossConfig, traf
from sigma_core.train.objective import StageObjective
from sigma_core.train.optim import make_optimizer
from sigma_core.train.runtime import autocast, autocast_dtype, make_accelerator
from sigma_core.train.stages import configure_stage, untrained_slots
from sigma_core.types import SigmaBatch


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
        self.base_record = read_base_actions(data)
        #: a_base comes from the shards (sigma preprocess --base-policy) when they hold the
        #: actions of this spec's base policy; the base policy then never runs in training
        entry = spec.base_policy.model_dump(mode="json")
        self.precomputed = base_actions_match(self.base_record, entry)
        if self.base_record is not None and not self.precomputed:
            warnings.warn(
                f"{data}: the shards hold base actions of base_policy "
                f"{self.base_record['base_policy']}, not this spec's; running it live",
                UserWarning,
                stacklevel=2,
            )
        pre = self.precomputed
        inputs = {
            "frame_history": f,
            "base_actions": pre,
            "environment_state": spec.model.dims.scene_state_dim,
            "actions": spec.data.actions,
        }
        self.dataset = ShardDataset(data, split="train", **inputs)
        self.val = ShardDataset(data, "val", verify=False, **inputs)
        self._check_data()
        k, stride = spec.data.run_length, spec.run_stride()
        self.runs = RunDataset(self.dataset, self.dataset.runs(k, stride))
        self.val_runs = RunDataset(self.val, self.val.runs(k, stride))
        self._check_runs()
        self.init_source = init_source(spec)
        check_trained_base(spec, self.init_source)
        check_same_actions(spec, self.init_source)
        torch.manual_seed(spec.train.seed)
        self.policy: SigmaPolicy = build_policy(spec)
        # a base policy in dataset units (e.g. pi0.5) needs the statistics Sigma normalises with
        self.policy.base_policy.set_data_stats(self.dataset.meta["stats"])
        if self.precomputed:
            sources = getattr(self.policy.base_policy, "pretrained_sources", {})
            check_base_sources(self.base_record, sources, str(data))
        self.init: dict[str, str] | None = None
        self.init_counts: dict[str, Any] = {}
        if source := self.init_source:
            self.init_counts = init_from_checkpoint(self.policy, source)
            self.init = {"path": source, "sha256": sha256_file(Path(source) / WEIGHTS)}
            lost = self.init_counts["skipped"] + self.init_counts["unused"]
            if spec.train.stage == "sigma" and lost:
                # the frozen tau = 0 path would not be the base: a silent change of model
                warnings.warn(
                    f"train.init_from {source}: {lost} of its tensors do not fit this model"
                    f" (e.g. {', '.join(self.init_counts['examples'])}), so the frozen tau = 0"
                    " path is not that base; build the pathway on the base's own"
                    " architecture (its sigma.json's model: section)",
                    UserWarning,
                    stacklevel=2,
                )
        configure_stage(self.policy, spec.train.stage)
        for message in untrained_slots(self.policy, spec.train.stage):
            warnings.warn(message, UserWarning, stacklevel=2)
        # DDP-wrapped when several processes run; self.policy stays the plain module
        self.objective = StageObjective(self.policy, spec.train.stage, self.losses, self.steps)
        self.model = self.accelerator.prepare_model(self.objective)
        self.optimizer, self.scheduler = make_optimizer(self.policy, spec.train)
        self.step = 0
        self.epoch = 0
        self.position = 0  # runs of the current epoch consumed by all processes together

    def _check_data(self) -> None:
        have = shard_dims(self.dataset.meta)
        check_dims(self.spec.model.dims, have, str(self.dataset.root))

    def _check_runs(self) -> None:
        d = self.spec.data
        if len(self.runs) < d.batch_size * self.world:
            what = (
                "train windows"
                if d.run_length == 1
                else f"runs of {d.run_length} windows {self.spec.run_stride()} frames apart"
                " (data.run_length, data.run_stride)"
            )
            raise SigmaUserError(
                f"{self.dataset.root}: {len(self.runs)} {what}, fewer than one batch"
                f" ({d.batch_size} x {self.world} processes)"
            )

    # ---- data ---------------------------------------------------------------
    def _batches(self) -> Iterator[list[SigmaBatch]]:
        """This process's micro-batches from the saved position on, epoch after epoch.

        An item is a run of ``data.run_length`` windows (one window when K = 1), and
        a micro-batch is the list of K batches of :func:`~sigma_core.data.collate_runs`.
        Each global batch is ``batch_size x num_processes`` consecutive runs of the
        epoch's seeded order; this process loads slice ``rank`` of it through
        ``data.num_workers`` loader processes. ``position`` counts the runs that the
        loop has consumed, so a resume starts exactly where the checkpoint was.
        """
        bs = self.spec.data.batch_size
        stride = bs * self.world  # one global batch; this process takes slice ``rank``
        while True:
            order = EpochSampler(len(self.runs), self.spec.train.seed, self.epoch).order()
            mine = self.rank * bs
            starts = range(self.position, len(order) - stride + 1, stride)
            plan = [order[p + mine : p + mine + bs] for p in starts]
            if plan:
                loader = make_loader(
                    self.runs,
                    bs,
                    seed=self.spec.train.seed,
                    epoch=self.epoch,
                    batches=plan,
                    num_workers=self.spec.data.num_workers,
                )
                for run in loader:
                    self.position += stride
                    yield [batch.to(self.device) for batch in run]
            self.epoch, self.position = self.epoch + 1, 0

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        return autocast(self.device, self.autocast_dtype)

    # ---- one optimizer step -------------------------------------------------
    def _loss(self, run: list[SigmaBatch]) -> tuple[torch.Tensor, dict[str, float]]:
        with self._autocast():
            return self.model(run, self.step)

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

    def _optimizer_step(self, batches: Iterator[list[SigmaBatch]]) -> dict[str, float] | None:
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
                except torch.OutOfMemoryError as e:
                    raise SigmaUserError(self._oom_message()) from e
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
                if len(self.val_runs) and (
                    self.step % self.val_every == 0 or self.step == self.steps
                ):
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
            self.policy.save_pretrained(
                self.out / "policy", trained_on=self.trained_on(), stats=self.dataset.meta["stats"]
            )
        self.accelerator.wait_for_everyone()
        return TrainResult(self.step, row, self._last(), skipped)

    def trained_on(self) -> dict[str, Any]:
        """What the saved policy was trained on: the shards' identity and train episodes."""
        meta = self.dataset.meta
        return {
            "shards": str(self.dataset.root),
            "meta_sha256": sha256_file(self.dataset.root / "meta.json"),
            "dataset": meta["source"]["dataset"],
            "fingerprint": meta["params"]["source"]["fingerprint"],
            "train_episodes": meta["split"]["train"]["episodes"],
        }

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
                stats = self.dataset.meta["stats"]
                self.policy.save_pretrained(
                    self.out / "best", trained_on=self.trained_on(), stats=stats
                )
        self.accelerator.wait_for_everyone()

    @torch.no_grad()
    def validate(self) -> float:
        """Mean TRAF ``L_act`` (before the hard term) over the val split's runs.

        The runs are the training ones' (``data.run_length`` windows, memory unrolled
        from ``m_0``); eval mode, training RNG untouched.
        """
        total, n = 0.0, 0
        telepathy = self.spec.train.stage == "sigma"
        # the sampler noise is drawn on the batch's device: fork that device's RNG too
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.spec.train.seed)  # the same sampler noise every time
            self.policy.eval()
            for run in make_loader(
                self.val_runs,
                self.spec.data.batch_size,
                shuffle=False,
                num_workers=self.spec.data.num_workers,
            ):
                m_prev = None
                for batch in run:
                    batch = batch.to(self.device)
                    with self._autocast():
                        out = self.policy(batch, m_prev, telepathy=telepathy)
                    m_prev = out.intent.m_t
                    l_act = traf(out.actions.to(torch.float32), batch.targets, self.losses).l_act
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
        name = f"step_{self.step:06d}"
        write_checkpoint(
            ckpts / name,
            policy=self.policy,
            spec=self.spec,
            init=self.init,
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            loop={
                "step": self.step,
                "epoch": self.epoch,
                "position": self.position,
                "num_processes": self.world,
                "best_val": self.best_val,
            },
        )
        atomic_write_text(self.out / "last", name + "\n")
        done = sorted(p for p in ckpts.iterdir() if p.name.startswith("step_"))
        for old in done[: -self.keep_last]:
            shutil.rmtree(old, ignore_errors=True)

    def _restore(self) -> None:
        if not (self.out / "last").exists():
            raise SigmaUserError(f"{self.out}: nothing to resume (no checkpoint yet)")
        ckpt = self._last()
        saved_init = checkpoint_init(ckpt)
        sha = (saved_init or {}).get("sha256"), (self.init or {}).get("sha256")
        if sha[0] != sha[1]:  # the same weights, even if the path is spelled differently
            raise SigmaUserError(
                f"{ckpt}: the run started from init_from {saved_init}, this spec gives"
                f" {self.init}; resume needs the same initial weights"
            )
        loop = read_checkpoint(
            ckpt,
            policy=self.policy,
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            device=self.device,
        )
        self.step, self.epoch, self.position = loop["step"], loop["epoch"], loop["position"]
        self.best_val = loop["best_val"]
        if self.main:  # drop rows logged after that checkpoint
            with open(self.out / "metrics.jsonl") as f:
                rows = [r for r in f if json.loads(r)["step"] <= self.step]
            atomic_write_text(self.out / "metrics.jsonl", "".join(rows))
        self.accelerator.wait_for_everyone()


def check_trained_base(spec: SigmaSpec, source: str | None) -> None:
    """Stage sigma needs its frozen tau = 0 path trained: refuse a silent random base.

    The frozen part (vision, backbone, query, branches, fusion) is trained when
    weights initialise it (``train.init_from``, or a ``checkpoint`` base policy's
    path) or when a base policy other than ``internal`` supplies ``a_base``.

    Raises:
        SigmaUserError: naming the fix, unless ``train.allow_random_base: true``.
    """
    t = spec.train
    if t.stage != "sigma" or source or spec.base_policy.type != "internal":
        return
    if not t.allow_random_base:
        raise SigmaUserError(
            "train.stage sigma freezes the tau = 0 path (vision, backbone, query, branches,"
            " fusion), but nothing trained initialises it: it would stay at random init."
            " Set train.init_from: <a trained policy directory> or base_policy: {type:"
            " checkpoint, path: <runs/base/policy>}; for a smoke test, set"
            " train.allow_random_base: true"
        )


def check_same_actions(spec: SigmaSpec, source: str | None) -> None:
    """A policy initialised from (or on top of) another predicts in its representation.

    Raises:
        SigmaUserError: ``source``'s saved spec has another ``data.actions`` (a relative
            base's actions added to an absolute residual would be meaningless).
    """
    if source is None or not (Path(source) / META).is_file():
        return
    theirs = read_meta(source).get("spec", {}).get("data", {}).get("actions", "absolute")
    if theirs != spec.data.actions:
        raise SigmaUserError(
            f"{source} predicts {theirs} actions, this spec data.actions: "
            f"{spec.data.actions}; set data.actions: {theirs} to build on it"
        )


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
