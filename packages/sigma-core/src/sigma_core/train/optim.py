"""Optimizer and schedule of ``sigma train``.

AdamW with two parameter groups: weight decay on weight matrices, none on
biases, norm weights, embeddings-like 1-D tensors and learnable scalars (the
log-scale gates). Learning rate: linear warm-up over ``warmup_steps`` from 0,
then cosine decay to ``min_lr_ratio·lr`` at ``steps``::

    f(t) = t / W                                    for t < W
    f(t) = r + (1 − r)·(1 + cos(π (t − W) / (S − W))) / 2   for W <= t <= S
"""

from __future__ import annotations

import math

import torch
from torch import nn

from sigma_core.spec import TrainSpec


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict[str, object]]:
    """Trainable parameters split into decayed (ndim >= 2) and not decayed (ndim < 2)."""
    decay, no_decay = [], []
    for _, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
        if not p.requires_grad:
            continue
        (decay if p.ndim >= 2 else no_decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def lr_factor(step: int, train: TrainSpec) -> float:
    """The schedule's multiplier of ``train.lr`` at optimizer step ``step`` (0-based)."""
    w, s, r = train.warmup_steps, train.steps, train.min_lr_ratio
    if step < w:
        return step / w
    progress = min(1.0, (step - w) / max(1, s - w))
    return r + (1 - r) * (1 + math.cos(math.pi * progress)) / 2


def make_optimizer(
    model: nn.Module, train: TrainSpec
) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW over the trainable parameters with the warm-up + cosine schedule."""
    groups = parameter_groups(model, train.weight_decay)
    if not any(g["params"] for g in groups):
        raise ValueError("the model has no trainable parameters")
    optimizer = torch.optim.AdamW(groups, lr=train.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda t: lr_factor(t, train))
    return optimizer, scheduler
