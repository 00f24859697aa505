"""Refitting a camera-only base's scene estimator on states its own policy visited.

A base with ``model.scene_state: estimated`` reads ``[state; s_hat]``, where ``s_hat =
head(mean_n V_base,n)`` estimates the privileged scene state from the cameras. Trained on
demonstrations only, the estimator meets in closed loop states the demonstrations never
showed (the arm goes where the estimate says, not where the expert went) and its error
grows there. The simulator knows the truth at every state the policy visits, so the
estimator can be refitted on them (DAgger, Ross et al. 2011, applied to the estimate
rather than to the actions: a base trained on the truth acts on its scene state, so only
the estimate needs new labels). The closed loop that collects the states lives in
``sigma_sim.dagger``; this module holds what the refit trains.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Self

import torch
from torch import Tensor

from sigma_core.data import ShardDataset, collate
from sigma_core.model.policy import SigmaPolicy
from sigma_core.train.losses import state_loss
from sigma_core.train.objective import StageObjective
from sigma_core.train.stages import configure_stage


@dataclass
class VisitedStates:
    """Planning steps of closed-loop episodes, in order: what the base read and the truth.

    Attributes:
        images: (N, C, F, 3, P, P) the camera frames in [0, 1] as the policy read them;
            float16 when recorded (half the memory: about 110 kB a step at 96 px), read
            as float32.
        state: (N, S) the normalized joints the policy read.
        truth: (N, S_env) the normalized ``observation.environment_state`` there.
    """

    images: Tensor
    state: Tensor
    truth: Tensor

    def __len__(self) -> int:
        return len(self.truth)

    def __add__(self, other: Self) -> Self:
        """Both sets in order, field by field (tensors concatenated, lists joined): also
        for subclasses that record more per step."""
        joined = {}
        for f in fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            joined[f.name] = a + b if isinstance(a, list) else torch.cat([a, b])
        return type(self)(**joined)


def named_error(policy: SigmaPolicy, visited: VisitedStates, chunk: int = 256) -> float:
    """The estimate's error on the named cube's table position: the mean over ``visited``
    of ``(s_hat[:2] - s[:2])^2`` (normalized units; entries 0 and 1 of the scene state are
    the named cube's x and y)."""
    errors = []
    with torch.no_grad():
        for i in range(0, len(visited), chunk):
            images = visited.images[i : i + chunk].float()
            s_hat = policy.estimate_scene(images, visited.state[i : i + chunk])[1]
            errors.append((s_hat[:, :2] - visited.truth[i : i + chunk, :2]).pow(2))
    return torch.cat(errors).mean().item() if errors else float("nan")


def refit_estimator(
    policy: SigmaPolicy,
    demonstrations: ShardDataset,
    visited: VisitedStates,
    steps: int,
    seed: int,
    lr: float = 3e-4,
    batch_size: int = 16,
) -> None:
    """Train the base's vision and scene estimator on visited states, in place.

    Each step draws ``batch_size`` demonstration windows and as many visited states, and
    minimizes

        L = L_base(demonstrations) + λ_state · L_state(s_hat(visited), s(visited))

    where ``L_base`` is stage base's own objective (TRAF + λ_fuse·L_fuse + λ_state·L_state,
    as ``sigma train`` computes it, :class:`StageObjective`), so the action path stays
    trained on the demonstrations while the vision moves, and ``L_state`` is the weighted
    scene-state loss of ``train.losses.state_weights``. AdamW (the spec's weight decay),
    cosine from ``lr`` over ``steps``, gradients clipped to ``train.max_grad_norm``; the
    draws come from a generator seeded with ``seed``, so a refit is deterministic. The
    policy is left in eval mode.

    Raises:
        SigmaUserError: the policy does not estimate its scene state.
    """
    from sigma_core.errors import SigmaUserError

    spec = policy.spec
    if spec.model.scene_state != "estimated":
        raise SigmaUserError(
            "refitting the scene estimator needs a camera-only base"
            f" (model.scene_state: estimated), not {spec.model.scene_state!r}"
        )
    configure_stage(policy, "base")
    objective = StageObjective(policy, "base", spec.train.losses, steps)
    params = [p for p in policy.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=spec.train.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    gen = torch.Generator().manual_seed(seed)
    losses = spec.train.losses
    policy.train()
    for step in range(steps):
        idx = torch.randint(len(demonstrations), (batch_size,), generator=gen)
        loss, _ = objective([collate([demonstrations[int(i)] for i in idx])], step)
        idx = torch.randint(len(visited), (batch_size,), generator=gen)
        s_hat = policy.estimate_scene(visited.images[idx].float(), visited.state[idx])[1]
        loss = loss + losses.lambda_state * state_loss(
            s_hat, visited.truth[idx], losses.state_weights
        )
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, spec.train.max_grad_norm)
        opt.step()
        sched.step()
    policy.eval()
