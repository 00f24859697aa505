"""Condition projector and query generator of the action workspace (paper §3)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from sigma_action.config import SigmaQueryConfig
from sigma_core import ActionQuery, Dims, QueryOutput
from sigma_core.layers import CrossAttentionBlock, mlp


class SigmaQuery(ActionQuery):
    """``c_act = MLP([high_level_rep; tau])``; ``Q_0 = seeds + W_c c_act`` (bias from c_act);
    ``Q = CrossAttn(Q_0, [S_tok; V])`` (state tokens, and vision tokens when
    ``attend_vision``); ``Q = LN(TransformerEncoder(Q))`` (refinement).
    With tau = 0 this gives ``c_act_base``.
    """

    name = "sigma"
    config_class = SigmaQueryConfig

    def __init__(self, config: SigmaQueryConfig, dims: Dims) -> None:
        super().__init__(config, dims)
        d = dims.d_model
        self.condition = mlp(2 * d, 2 * d, d, config.dropout)
        self.seeds = nn.Parameter(torch.randn(config.num_queries, d) / math.sqrt(d))
        self.bias = nn.Linear(d, d)
        self.cross = CrossAttentionBlock(d, config.num_heads, dropout=config.dropout)
        layer = nn.TransformerEncoderLayer(
            d, config.num_heads, 4 * d, config.dropout, batch_first=True, norm_first=True
        )
        self.refine = nn.TransformerEncoder(layer, config.num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)

    def forward(
        self, high_level_rep: Tensor, tau: Tensor, state_tokens: Tensor, vision_tokens: Tensor
    ) -> QueryOutput:
        c_act = self.condition(torch.cat([high_level_rep, tau], dim=-1))
        q = self.seeds + self.bias(c_act).unsqueeze(1)
        context = (
            torch.cat([state_tokens, vision_tokens], 1)
            if self.config.attend_vision
            else state_tokens
        )
        q = self.norm(self.refine(self.cross(q, context)))
        return QueryOutput(queries=q, c_act=c_act)
