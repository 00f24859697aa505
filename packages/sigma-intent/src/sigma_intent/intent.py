"""The paper's intent workspace (§2): semantic factors, memory, intent, tau, modulator."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from sigma_core import Dims, IntentOutput, IntentWorkspace, MemoryFn
from sigma_core.layers import CrossAttentionBlock, mlp
from sigma_intent.config import SigmaIntentConfig


class LanguageModulator(nn.Module):
    """Double-gated bias of the language representation by tau.

    ``high_level_rep = h + exp(theta_lang) * sigmoid(W_g [h; tau]) * (W_b tau)``:
    a learnable log-scale gate (global) times a sigmoid gate (per feature).
    tau = 0 leaves ``h`` unchanged.
    """

    def __init__(self, d: int, theta_init: float) -> None:
        super().__init__()
        self.theta_lang = nn.Parameter(torch.tensor(float(theta_init)))
        self.gate = nn.Linear(2 * d, d)
        self.bias = nn.Linear(d, d, bias=False)

    def forward(self, h: Tensor, tau: Tensor) -> Tensor:
        g = torch.sigmoid(self.gate(torch.cat([h, tau], dim=-1)))
        return h + self.theta_lang.exp() * g * self.bias(tau)


class SigmaIntent(IntentWorkspace):
    """Intent workspace of the paper.

    ``H = LN(W_in hidden)``; semantic factor head ``Z_sem = LN(CrossAttn(Q_K, H))``
    with K learnable queries, ``z_pool = mean_k Z_sem``; ``m_t = memory(z_pool,
    m_{t-1})``; summary heads ``c_env, c_beh, c_text`` (one attention-pooling query
    each over H); ``z_intent = MLP([m_t; c_env; c_beh])``;
    ``tau = MLP([m_t; z_intent; c_env; c_beh; z_pool; c_text])``;
    ``high_level_rep = LanguageModulator(c_text, tau)``.
    """

    name = "sigma"
    config_class = SigmaIntentConfig
    # The factor head, intent head, telepathy projector, language modulator and the
    # c_env / c_beh summary heads (read only by z_intent and tau) form the telepathy
    # pathway; in_proj and the c_text head serve the tau = 0 path too.
    telepathy_params = (
        "c_env_head.",
        "c_beh_head.",
        "factor_queries",
        "factor_head.",
        "factor_norm.",
        "intent_head.",
        "telepathy_projector.",
        "modulator.",
    )

    def __init__(
        self, config: SigmaIntentConfig, dims: Dims, backbone_width: int | None = None
    ) -> None:
        super().__init__(config, dims, backbone_width)
        d, heads = dims.d_model, config.num_heads
        if d % heads:
            raise ValueError(f"intent.num_heads={heads} must divide model.dims.d_model={d}")
        self.in_proj = nn.Sequential(nn.Linear(self.backbone_width, d), nn.LayerNorm(d))
        self.factor_queries = nn.Parameter(torch.randn(config.num_factors, d) / math.sqrt(d))
        self.factor_head = CrossAttentionBlock(d, heads, dropout=config.dropout)
        self.factor_norm = nn.LayerNorm(d)
        self.summary_queries = nn.Parameter(torch.randn(3, d) / math.sqrt(d))
        self.summary_head = CrossAttentionBlock(d, heads, dropout=config.dropout)
        self.c_env_head, self.c_beh_head, self.c_text_head = (nn.Linear(d, d) for _ in range(3))
        self.intent_head = mlp(3 * d, 2 * d, d, config.dropout)
        self.telepathy_projector = mlp(6 * d, 2 * d, d, config.dropout)
        self.modulator = LanguageModulator(d, config.theta_lang_init)

    def forward(
        self, hidden: Tensor, mask: Tensor, m_prev: Tensor, memory: MemoryFn
    ) -> IntentOutput:
        h = self.in_proj(hidden.to(self.factor_queries.dtype))
        pad = mask == 0
        b = h.shape[0]
        z_sem = self.factor_norm(self.factor_head(self.factor_queries.expand(b, -1, -1), h, pad))
        z_pool = z_sem.mean(dim=1)
        m_t = memory(z_pool, m_prev)
        summary = self.summary_head(self.summary_queries.expand(b, -1, -1), h, pad)
        c_env = self.c_env_head(summary[:, 0])
        c_beh = self.c_beh_head(summary[:, 1])
        c_text = self.c_text_head(summary[:, 2])
        z_intent = self.intent_head(torch.cat([m_t, c_env, c_beh], dim=-1))
        tau = self.telepathy_projector(
            torch.cat([m_t, z_intent, c_env, c_beh, z_pool, c_text], dim=-1)
        )
        return IntentOutput(
            z_sem=z_sem,
            z_pool=z_pool,
            m_t=m_t,
            c_env=c_env,
            c_beh=c_beh,
            c_text=c_text,
            z_intent=z_intent,
            tau=tau,
            high_level_rep=self.modulator(c_text, tau),
        )
