"""AdamW parameter groups and the warm-up + cosine schedule."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from sigma_core.spec import TrainSpec
from sigma_core.train.optim import lr_factor, make_optimizer, parameter_groups


def test_no_decay_on_biases_norms_and_scalars_and_frozen_left_out():
    model = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.Linear(4, 2))
    model.register_parameter("gate", nn.Parameter(torch.tensor(0.0)))
    model[2].requires_grad_(False)
    decay, no_decay = parameter_groups(model, 0.05)
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert [p.shape for p in decay["params"]] == [torch.Size([4, 3])]
    assert sorted(p.numel() for p in no_decay["params"]) == [1, 4, 4, 4]  # gate, bias, LN w/b


def test_schedule_warms_up_then_decays_to_the_floor():
    t = TrainSpec(steps=110, lr=1e-3, warmup_steps=10, min_lr_ratio=0.1)
    assert [lr_factor(s, t) for s in (0, 5, 10)] == [0.0, 0.5, 1.0]
    assert lr_factor(60, t) == pytest.approx(0.1 + 0.9 * (1 + math.cos(math.pi / 2)) / 2)
    assert lr_factor(110, t) == pytest.approx(0.1) and lr_factor(500, t) == pytest.approx(0.1)
    model = nn.Linear(2, 2)
    opt, sched = make_optimizer(model, t)
    lrs = []
    for _ in range(12):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == 0.0 and lrs[10] == pytest.approx(1e-3) and lrs[11] < 1e-3
    with pytest.raises(ValueError, match="no trainable parameters"):
        make_optimizer(nn.Linear(2, 2).requires_grad_(False), t)
