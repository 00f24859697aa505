"""Semantic memories: how m_t carries intent across control steps (paper §2)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from sigma_core import Dims, SemanticMemory
from sigma_intent.config import EmaMemoryConfig, GatedMemoryConfig, NoMemoryConfig


class GatedMemory(SemanticMemory):
    """Gated memory of the paper.

    ``u = GELU(W_u z_pool)``, ``lambda = sigmoid(W_lambda [m_{t-1}; z_pool])``,
    ``m_t = lambda * m_{t-1} + (1 - lambda) * u``.
    """

    name = "gated"
    config_class = GatedMemoryConfig

    def __init__(self, config: GatedMemoryConfig, dims: Dims) -> None:
        super().__init__(config, dims)
        d = dims.d_model
        self.w_u = nn.Linear(d, d)
        self.w_lambda = nn.Linear(2 * d, d)

    def forward(self, z_pool: Tensor, m_prev: Tensor) -> Tensor:
        u = nn.functional.gelu(self.w_u(z_pool))
        lam = torch.sigmoid(self.w_lambda(torch.cat([m_prev, z_pool], dim=-1)))
        return lam * m_prev + (1 - lam) * u


class NoMemory(SemanticMemory):
    """No memory: ``m_t = z_pool`` (the ablation without recurrence)."""

    name = "none"
    config_class = NoMemoryConfig
    recurrent = False

    def forward(self, z_pool: Tensor, m_prev: Tensor) -> Tensor:
        return z_pool


class EmaMemory(SemanticMemory):
    """Fixed exponential moving average: ``m_t = decay * m_{t-1} + (1 - decay) * z_pool``."""

    name = "ema"
    config_class = EmaMemoryConfig

    def forward(self, z_pool: Tensor, m_prev: Tensor) -> Tensor:
        return self.config.decay * m_prev + (1 - self.config.decay) * z_pool
