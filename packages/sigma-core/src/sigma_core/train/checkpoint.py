"""A training checkpoint on disk: what a stage trained, plus the trainer's state.

The one writer (:func:`write_checkpoint`) and reader (:func:`read_checkpoint`)
of this format.

Layout of ``checkpoints/step_N/``::

    heads.safetensors            every trainable tensor outside LoRA (policy names)
    adapter_model.safetensors    the backbone's PEFT LoRA adapter (peft's own format, so
    adapter_config.json          ``PeftModel.from_pretrained(base, step_N)`` loads it)
    sigma.json                   format, resolved spec, component versions, init_from + sha256
    trainer.safetensors          optimizer moments, RNG states
    trainer.json                 step, epoch, data position, scheduler, best validation

Frozen tensors are not repeated: they are rebuilt from the spec (seeded) and
``init_from``, whose checksum is recorded so a resume cannot silently start from
other weights. With more than one PEFT model in the policy, each adapter goes to
``adapters/<module path>/`` instead of the top level.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from sigma_core._fileio import atomic_dir
from sigma_core.errors import SigmaUserError
from sigma_core.model.checkpoint import policy_meta, read_meta, write_meta
from sigma_core.spec import SigmaSpec
from sigma_core.train.stages import is_lora

HEADS = "heads.safetensors"
ADAPTER = "adapter_model.safetensors"
TRAINER_TENSORS = "trainer.safetensors"
TRAINER_STATE = "trainer.json"


def peft_models(policy: nn.Module) -> dict[str, nn.Module]:
    """Module path -> PEFT model, for every one whose tensors ``policy`` saves.

    A frozen base policy's adapter (inside ``base_policy.base``, left out of the
    policy's ``state_dict``) is not one: it belongs to the base's own checkpoint.
    """
    peft = sys.modules.get("peft")  # no peft imported means no adapter can exist
    if peft is None:
        return {}
    saved = policy.state_dict().keys()
    return {
        n: m
        for n, m in policy.named_modules()
        if isinstance(m, peft.PeftModel)
        and any(f"{n}.{k}" in saved for k, _ in m.named_parameters())
    }


def _adapter_dirs(policy: nn.Module, directory: Path) -> dict[str, tuple[nn.Module, Path]]:
    models = peft_models(policy)
    if len(models) == 1:
        return {n: (m, directory) for n, m in models.items()}
    return {n: (m, directory / "adapters" / n) for n, m in models.items()}


def head_names(policy: nn.Module) -> list[str]:
    """Names of the trainable parameters that ``heads.safetensors`` holds (LoRA excluded)."""
    return [n for n, p in policy.named_parameters() if p.requires_grad and not is_lora(n)]


def save_trained(policy: nn.Module, directory: Path) -> None:
    """Write ``heads.safetensors`` and the PEFT adapter(s) of ``policy`` into ``directory``."""
    params = dict(policy.named_parameters())
    heads = {n: params[n].detach().contiguous() for n in head_names(policy)}
    save_file(heads, str(directory / HEADS))
    for model, where in _adapter_dirs(policy, directory).values():
        where.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(str(where), safe_serialization=True)


def load_trained(policy: nn.Module, directory: Path) -> None:
    """Restore what :func:`save_trained` wrote; the trainable set must be the same."""
    heads = load_file(str(directory / HEADS))
    want = set(head_names(policy))
    if set(heads) != want:
        diff = sorted(set(heads) ^ want)[:5]
        raise SigmaUserError(
            f"{directory / HEADS}: trained tensors differ from this spec's stage ({diff} ...);"
            " resume with the spec the run was started with"
        )
    params = dict(policy.named_parameters())
    with torch.no_grad():
        for name, value in heads.items():
            params[name].copy_(value)
    for module_path, (model, where) in _adapter_dirs(policy, directory).items():
        if not (where / ADAPTER).is_file():
            raise SigmaUserError(f"{where}: missing {ADAPTER} for {module_path}")
        import peft

        result = peft.set_peft_model_state_dict(model, load_file(str(where / ADAPTER)))
        if result.unexpected_keys:
            raise SigmaUserError(f"{where / ADAPTER}: unexpected keys {result.unexpected_keys[:3]}")


def write_checkpoint(
    directory: str | Path,
    *,
    policy: nn.Module,
    spec: SigmaSpec,
    init: dict[str, str] | None,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    loop: dict[str, Any],
) -> None:
    """Write one checkpoint directory atomically (see the module docstring for its files).

    Args:
        init: where the frozen weights came from (``{"path", "sha256"}``) or None.
        loop: the loop's position: ``step``, ``epoch``, ``position``, ``num_processes``
            and ``best_val`` (``inf`` is stored as null).
    """
    with atomic_dir(directory) as tmp:
        save_trained(policy, tmp)
        write_meta(tmp, policy_meta(spec) | {"init_from": init})
        tensors, opt_meta = optimizer_tensors(optimizer)
        save_file(tensors | rng_tensors(), str(tmp / TRAINER_TENSORS))
        best = loop.get("best_val")
        state = loop | {
            "best_val": None if best is None or math.isinf(best) else best,
            "scheduler": {k: v for k, v in scheduler.state_dict().items() if k != "lr_lambdas"},
            "optimizer": opt_meta,
        }
        (tmp / TRAINER_STATE).write_text(json.dumps(state, indent=1))


def checkpoint_init(directory: str | Path) -> dict[str, str] | None:
    """The ``init_from`` record (path and sha256 of the frozen weights) of a checkpoint."""
    return read_meta(directory).get("init_from")


def read_checkpoint(
    directory: str | Path,
    *,
    policy: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    device: torch.device | str = "cpu",
) -> dict[str, Any]:
    """Restore what :func:`write_checkpoint` wrote; return the loop position it saved.

    Weights (heads + adapters), optimizer moments, scheduler and RNG are restored
    in place; the returned dict holds ``step``, ``epoch``, ``position``,
    ``num_processes`` and ``best_val`` (``inf`` when none was recorded).
    """
    directory = Path(directory)
    load_trained(policy, directory)
    state = json.loads((directory / TRAINER_STATE).read_text())
    tensors = load_file(str(directory / TRAINER_TENSORS), device=str(device))
    load_rng({k: v.cpu() for k, v in tensors.items() if k.startswith("rng.")})
    load_optimizer(optimizer, tensors, state["optimizer"])
    scheduler.load_state_dict(scheduler.state_dict() | state["scheduler"])
    loop = {k: v for k, v in state.items() if k not in ("optimizer", "scheduler")}
    loop["best_val"] = math.inf if loop.get("best_val") is None else loop["best_val"]
    return loop


# ---- optimizer and RNG as safetensors + JSON (no pickle) -------------------------
def optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Optimizer state split into tensors (safetensors) and JSON-able metadata."""
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"opt.{idx}.{k}"] = v.contiguous()
            else:
                scalars[f"{idx}.{k}"] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def load_optimizer(opt: torch.optim.Optimizer, tensors: dict, meta: dict) -> None:
    """Inverse of :func:`optimizer_tensors` (keys not starting with ``opt.`` are ignored)."""
    state: dict[int, dict[str, Any]] = {}
    for key, v in tensors.items():
        if key.startswith("opt."):
            _, idx, k = key.split(".", 2)
            state.setdefault(int(idx), {})[k] = v
    for key, v in meta["scalars"].items():
        idx, k = key.split(".", 1)
        state.setdefault(int(idx), {})[k] = v
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def rng_tensors() -> dict[str, torch.Tensor]:
    """torch's CPU RNG state, and CUDA's when a GPU is in use."""
    out = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["rng.cuda"] = torch.cuda.get_rng_state()
    return out


def load_rng(tensors: dict[str, torch.Tensor]) -> None:
    """Restore what :func:`rng_tensors` saved."""
    torch.set_rng_state(tensors["rng.torch"])
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda"])
