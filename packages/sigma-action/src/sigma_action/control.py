"""Low-level controller and the inference adapter (paper §3 and §5)."""

from __future__ import annotations

import torch
from torch import Tensor

from sigma_action.config import ClipControllerConfig, IdentityAdapterConfig, RiskAdapterConfig
from sigma_core import AdapterOutput, Controller, Dims, InferenceAdapter


class ClipController(Controller):
    """``u_h = clip(s_h, low, high)`` with ``s_h = (1 - k) plan_h + k s_{h-1}`` (``s_{-1}``
    = the previous command, k = ``smoothing``). Limits come from the config or
    :meth:`set_limits` (dataset statistics); absent limits do not clip.
    """

    name = "clip"
    config_class = ClipControllerConfig

    def __init__(self, config: ClipControllerConfig, dims: Dims) -> None:
        super().__init__(config, dims)
        a = dims.action_dim
        for key in ("low", "high"):
            value = getattr(config, key)
            if value is not None and len(value) != a:
                raise ValueError(f"controller.{key} has {len(value)} values, action_dim is {a}")
        low = torch.tensor(config.low) if config.low else torch.full((a,), float("-inf"))
        high = torch.tensor(config.high) if config.high else torch.full((a,), float("inf"))
        self.register_buffer("low", low.float())
        self.register_buffer("high", high.float())

    def set_limits(self, low: Tensor, high: Tensor) -> None:
        """Set joint limits (A,) e.g. from the dataset's action quantiles."""
        self.low.copy_(low)
        self.high.copy_(high)

    def forward(self, plan: Tensor, previous: Tensor | None = None) -> Tensor:
        k = self.config.smoothing
        if k > 0:
            steps, prev = [], previous
            for h in range(plan.shape[1]):
                cur = plan[:, h] if prev is None else (1 - k) * plan[:, h] + k * prev
                steps.append(cur)
                prev = cur
            plan = torch.stack(steps, dim=1)
        return torch.maximum(torch.minimum(plan, self.high), self.low)


class RiskAdapter(InferenceAdapter):
    """Risk-scaled residual (paper §5).

    ``risk = w_ratio ||delta_a|| / (||a_base|| + eps) + w_tau ||tau|| / sqrt(E)
    + w_align (1 - cos(tau, c_act)) / 2``;
    ``scale = min_scale + (max_scale - min_scale) exp(-risk / T)``, set to 0 below
    ``fallback_below`` (large or misaligned residuals fall back to the base).
    :meth:`InferenceAdapter.apply` then gives ``a = a_base + scale * delta_a``.
    """

    name = "risk"
    config_class = RiskAdapterConfig

    def scale_of(self, risk: Tensor) -> Tensor:
        """The scale for a risk: non-increasing in ``risk``, in [0, max_scale]."""
        cfg = self.config
        scale = cfg.min_scale + (cfg.max_scale - cfg.min_scale) * torch.exp(-risk / cfg.temperature)
        return torch.where(scale < cfg.fallback_below, torch.zeros_like(scale), scale)

    def forward(self, base: Tensor, residual: Tensor, tau: Tensor, c_act: Tensor) -> AdapterOutput:
        cfg = self.config
        ratio = residual.flatten(1).norm(dim=-1) / (base.flatten(1).norm(dim=-1) + 1e-6)
        tau_norm = tau.norm(dim=-1) / tau.shape[-1] ** 0.5
        misalign = (1 - torch.cosine_similarity(tau, c_act, dim=-1)) / 2
        risk = cfg.w_ratio * ratio + cfg.w_tau * tau_norm + cfg.w_align * misalign
        return AdapterOutput(scale=self.scale_of(risk), risk=risk)


class IdentityAdapter(InferenceAdapter):
    """``scale = 1`` for every sample (``a = a_base + Δa``): the no-adapter ablation."""

    name = "identity"
    config_class = IdentityAdapterConfig

    def forward(self, base: Tensor, residual: Tensor, tau: Tensor, c_act: Tensor) -> AdapterOutput:
        ones = torch.ones(base.shape[0], device=base.device, dtype=base.dtype)
        return AdapterOutput(scale=ones, risk=torch.zeros_like(ones))
