"""The component itself."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from sigma_core import ChunkBranch
from sigma_example_chunk.plugin import AttentionChunkConfig


class AttentionChunk(ChunkBranch):
    """``chunk_h = W_o Attn(q_h + W_c c_act, Q)`` with one learnable query q_h per step h."""

    name = "chunk-attention"
    config_class = AttentionChunkConfig

    def __init__(self, config: AttentionChunkConfig, dims) -> None:
        super().__init__(config, dims)
        d = dims.d_model
        self.step_queries = nn.Parameter(torch.randn(dims.chunk_horizon, d) / d**0.5)
        self.condition = nn.Linear(d, d)
        self.attn = nn.MultiheadAttention(d, config.num_heads, batch_first=True)
        self.out = nn.Linear(d, dims.action_dim)

    def forward(self, queries: Tensor, c_act: Tensor) -> Tensor:
        q = self.step_queries + self.condition(c_act).unsqueeze(1)
        return self.out(self.attn(q, queries, queries, need_weights=False)[0])
