"""A GRU semantic memory: ``m_t = GRUCell(LN(z_pool), m_{t-1})``."""

from __future__ import annotations

from torch import Tensor, nn

from sigma_core import Dims, SemanticMemory
from sigma_example_gru.plugin import GruMemoryConfig


class GruMemory(SemanticMemory):
    """``r, z = σ(W[x; m_{t-1}])``, ``n = tanh(W_n x + r ⊙ U_n m_{t-1})``,
    ``m_t = (1 − z) ⊙ n + z ⊙ m_{t-1}`` with ``x = LN(z_pool)``.

    A convex combination of ``m_{t-1}`` and a tanh: bounded in [-1, 1] from the
    zero initial state, as the kit checks. Every parameter is part of the
    telepathy pathway (the :class:`SemanticMemory` default ``telepathy_params``),
    so it trains in stage ``sigma``, on a trained base.
    """

    name = "gru"
    config_class = GruMemoryConfig

    def __init__(self, config: GruMemoryConfig, dims: Dims) -> None:
        super().__init__(config, dims)
        d = dims.d_model  # z_pool and m_t are both D wide
        self.norm = nn.LayerNorm(d) if config.input_norm else nn.Identity()
        self.cell = nn.GRUCell(d, d)

    def forward(self, z_pool: Tensor, m_prev: Tensor) -> Tensor:
        return self.cell(self.norm(z_pool), m_prev)
