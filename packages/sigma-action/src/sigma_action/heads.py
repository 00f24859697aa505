"""Residual heads and fusion (paper §3)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from sigma_action.config import MlpResidualConfig, WeightedFusionConfig
from sigma_core import ActionSet, Dims, Fusion, ResidualHead
from sigma_core.layers import mlp


class MlpResidual(ResidualHead):
    """``delta_a_s = g_s([high_level_rep; tau])`` for s in {vector, chunk, trajectory}.

    One MLP per scale; with ``zero_init`` the last layers start at zero so
    training starts from the base policy (delta_a = 0).
    """

    name = "mlp"
    config_class = MlpResidualConfig

    def __init__(self, config: MlpResidualConfig, dims: Dims) -> None:
        super().__init__(config, dims)
        d, a, hid = dims.d_model, dims.action_dim, config.hidden_mult * dims.d_model
        self.g_vector = mlp(2 * d, hid, a)
        self.g_chunk = mlp(2 * d, hid, dims.chunk_horizon * a)
        self.g_trajectory = mlp(2 * d, hid, dims.horizon * a)
        if config.zero_init:
            for g in (self.g_vector, self.g_chunk, self.g_trajectory):
                nn.init.zeros_(g[-1].weight)
                nn.init.zeros_(g[-1].bias)

    def forward(self, high_level_rep: Tensor, tau: Tensor) -> ActionSet:
        x = torch.cat([high_level_rep, tau], dim=-1)
        a = self.dims.action_dim
        return ActionSet(
            vector=self.g_vector(x),
            chunk=self.g_chunk(x).unflatten(-1, (-1, a)),
            trajectory=self.g_trajectory(x).unflatten(-1, (-1, a)),
        )


class WeightedFusion(Fusion):
    """``plan_h = sum_s softmax(w_h)_s * a_s[h]`` over the scales available at step h.

    Step 0 fuses vector, chunk[0] and trajectory[0]; later steps fuse chunk[h] and
    trajectory[h] (the vector branch has only one step). Weights start equal.
    """

    name = "weighted"
    config_class = WeightedFusionConfig

    def __init__(self, config: WeightedFusionConfig, dims: Dims) -> None:
        super().__init__(config, dims)
        if dims.horizon < dims.chunk_horizon:
            raise ValueError("model.dims.horizon must be >= model.dims.chunk_horizon")
        self.logits = nn.Parameter(torch.zeros(dims.chunk_horizon, 3))
        available = torch.ones(dims.chunk_horizon, 3, dtype=torch.bool)
        available[1:, 0] = False
        self.register_buffer("available", available, persistent=False)

    def forward(self, vector: Tensor, chunk: Tensor, trajectory: Tensor) -> Tensor:
        h = chunk.shape[1]
        scales = torch.stack(
            [vector.unsqueeze(1).expand_as(chunk), chunk, trajectory[:, :h]], dim=2
        )  # (B, H, 3, A)
        w = self.logits.masked_fill(~self.available, float("-inf")).softmax(-1)
        return (w[None, :, :, None] * scales).sum(2)
