"""Where training runs: the accelerate ``Accelerator``, the device and bf16 autocast."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import torch

from sigma_core.errors import SigmaUserError

if TYPE_CHECKING:
    from accelerate import Accelerator

DEVICES = ("auto", "cpu", "cuda", "mps")


def make_accelerator(device: str = "auto") -> Accelerator:
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


def autocast(
    device: torch.device, dtype: torch.dtype | None
) -> contextlib.AbstractContextManager[Any]:
    """``torch.autocast`` to ``dtype`` on ``device``, or nothing when ``dtype`` is None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)
