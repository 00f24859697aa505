"""Batch and output types passed between components, with their tensor shapes.

Shape symbols: B batch, C cameras, F frames per camera, P image side, S state
dim, A action dim, H chunk horizon H_c, T trajectory horizon, D model width,
E telepathy dim tau, W backbone width, L sequence length, N_* token counts.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

import torch
from torch import Tensor


@dataclass
class ActionSet:
    """Actions at the paper's three scales.

    Attributes:
        vector: (B, A) the current step's action.
        chunk: (B, H, A) the next H_c steps.
        trajectory: (B, T, A) the whole window.
    """

    vector: Tensor
    chunk: Tensor
    trajectory: Tensor

    def map(self, fn) -> ActionSet:  # type: ignore[no-untyped-def]
        """Apply ``fn`` to each of the three tensors."""
        return ActionSet(fn(self.vector), fn(self.chunk), fn(self.trajectory))

    def zip(self, other: ActionSet, fn) -> ActionSet:  # type: ignore[no-untyped-def]
        """Combine with another set scale by scale: ``fn(self.x, other.x)``."""
        return ActionSet(
            fn(self.vector, other.vector),
            fn(self.chunk, other.chunk),
            fn(self.trajectory, other.trajectory),
        )

    def __add__(self, other: ActionSet) -> ActionSet:
        return self.zip(other, torch.add)

    def __sub__(self, other: ActionSet) -> ActionSet:
        return self.zip(other, torch.sub)

    def to(self, *args, **kwargs) -> ActionSet:  # type: ignore[no-untyped-def]
        return self.map(lambda t: t.to(*args, **kwargs))


@dataclass
class SigmaBatch:
    """One batch of observations (and, for training, targets).

    Attributes:
        images: (B, C, F, 3, P, P) float in [0, 1], cameras in ``dims.cameras`` order.
        state: (B, S) robot state (normalized).
        texts: B task instructions.
        base_actions: optional external base actions a_base (e.g. pi0.5's, precomputed).
        targets: optional ground-truth actions for training and evaluation.
        environment_state: optional (B, E_env) privileged scene state (normalized),
            read only by specs with ``model.dims.environment_state_dim`` > 0.
        target_valid: optional (B, T) bool, which steps of ``targets.trajectory`` are
            real (False: padding past the episode's end, LeRobot's ``action_is_pad``);
            TRAF leaves the padded steps out. ``None``: every step is real.
    """

    images: Tensor
    state: Tensor
    texts: list[str]
    base_actions: ActionSet | None = None
    targets: ActionSet | None = None
    environment_state: Tensor | None = None
    target_valid: Tensor | None = None

    def __post_init__(self) -> None:
        if self.images.ndim != 6:
            raise ValueError(f"images must be (B, C, F, 3, P, P), got {tuple(self.images.shape)}")
        b = self.images.shape[0]
        if self.state.shape[0] != b or len(self.texts) != b:
            raise ValueError(
                f"batch size mismatch: images {b}, state {self.state.shape[0]}, "
                f"texts {len(self.texts)}"
            )

    @property
    def batch_size(self) -> int:
        return self.images.shape[0]

    def to(self, device: torch.device | str) -> SigmaBatch:
        """Move every tensor to ``device``."""
        return replace(
            self,
            images=self.images.to(device),
            state=self.state.to(device),
            base_actions=self.base_actions.to(device) if self.base_actions else None,
            targets=self.targets.to(device) if self.targets else None,
            environment_state=None
            if self.environment_state is None
            else self.environment_state.to(device),
            target_valid=None if self.target_valid is None else self.target_valid.to(device),
        )


@dataclass
class VisionOutput:
    """Vision workspace output.

    Attributes:
        tokens: (B, N_v, D) V_mod after the modulated block (V_base when tau is None).
        state_tokens: (B, N_s, D) expanded state tokens.
        reuse: what :meth:`~sigma_core.components.VisionWorkspace.modulate` may reuse
            from a tau = None pass (e.g. the resampled tokens before the modulator);
            None when the workspace keeps nothing.
    """

    tokens: Tensor
    state_tokens: Tensor
    reuse: Any = None


@dataclass
class BackboneOutput:
    """Backbone output: hidden (B, L, W) over [text; prefix] and its mask (B, L)."""

    hidden: Tensor
    mask: Tensor


@dataclass
class IntentOutput:
    """Intent workspace output (paper §2 symbols), all (B, D) but Z_sem (B, K, D), tau (B, E)."""

    z_sem: Tensor
    z_pool: Tensor
    m_t: Tensor
    c_env: Tensor
    c_beh: Tensor
    c_text: Tensor
    z_intent: Tensor
    tau: Tensor
    high_level_rep: Tensor


@dataclass
class QueryOutput:
    """Action queries Q (B, N_q, D) and the condition c_act (B, D)."""

    queries: Tensor
    c_act: Tensor


@dataclass
class AdapterOutput:
    """The inference adapter's per-sample residual ``scale`` (B,) and the ``risk`` (B,) behind it.

    ``fallback`` (B,) bool marks samples whose residual, τ or c_act held NaN/inf:
    they get exactly the base action (set by :meth:`InferenceAdapter.apply`).
    """

    scale: Tensor
    risk: Tensor
    fallback: Tensor | None = None

    @property
    def fallbacks(self) -> int:
        """How many samples fell back to the base because of non-finite inputs."""
        return 0 if self.fallback is None else int(self.fallback.sum())


@dataclass
class SigmaOutput:
    """Everything one telepathy forward produces.

    ``actions = base + residual`` scale by scale (before the adapter); ``plan`` is
    the fused, controller-limited (B, H, A) command sequence.
    """

    actions: ActionSet
    base: ActionSet
    residual: ActionSet
    plan: Tensor
    tau: Tensor
    c_act: Tensor
    c_act_base: Tensor
    intent: IntentOutput
    extras: dict[str, Tensor] = field(default_factory=dict)


def tensors_of(obj: object) -> dict[str, Tensor]:
    """Flatten a dataclass (nested ones too) or tensor into ``{dotted name: tensor}``."""
    if obj is None:
        return {}
    if isinstance(obj, Tensor):
        return {"return": obj}
    out: dict[str, Tensor] = {}
    for f in fields(obj):  # type: ignore[arg-type]
        value = getattr(obj, f.name)
        if isinstance(value, Tensor):
            out[f.name] = value
        elif hasattr(value, "__dataclass_fields__"):
            out |= {f"{f.name}.{k}": v for k, v in tensors_of(value).items()}
    return out
