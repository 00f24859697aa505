"""Small transformer building blocks shared by components of every workspace."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def mlp(d_in: int, d_hidden: int, d_out: int, dropout: float = 0.0) -> nn.Sequential:
    """Two-layer MLP with GELU: Linear -> GELU -> Dropout -> Linear."""
    return nn.Sequential(
        nn.Linear(d_in, d_hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(d_hidden, d_out)
    )


def scene_head(d: int, width: int) -> nn.Sequential:
    """The auxiliary scene-state head ``s_hat = head(mean_n V_base,n)``: LayerNorm, Linear,
    GELU, Linear (D -> D -> S_aux)."""
    return nn.Sequential(nn.LayerNorm(d), nn.Linear(d, d), nn.GELU(), nn.Linear(d, width))


class SceneCorrection(nn.Module):
    """The telepathy path's correction of the base's scene estimate (``model.scene_correction``)::

        p     = Attn(q = W_q tau, K = V = LN(V_mod))          (tau picks tokens of the scene)
        s_tau = s_hat + W_2 GELU(W_1 [p; tau; s_hat])

    ``W_2`` starts at zero, so an untrained correction is the identity (``s_tau = s_hat``)
    and the telepathy path starts as the frozen base.
    """

    def __init__(self, d: int, width: int, heads: int = 4) -> None:
        super().__init__()
        self.query = nn.Linear(d, d)
        self.norm = nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.head = mlp(2 * d + width, d, width)
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)

    def forward(self, s_hat: Tensor, tau: Tensor, tokens: Tensor) -> Tensor:
        """``(B, S_aux)`` corrected estimate from ``s_hat`` (B, S_aux), ``tau`` (B, D) and
        the modulated vision tokens (B, N, D)."""
        kv = self.norm(tokens)
        picked = attend(self.attn, self.query(tau).unsqueeze(1), kv, None).squeeze(1)
        return s_hat + self.head(torch.cat([picked, tau, s_hat], dim=-1))


class CrossAttentionBlock(nn.Module):
    """Pre-LN cross-attention + FFN: ``x = x + Attn(LN(x), LN(ctx)); x = x + FFN(LN(x))``."""

    def __init__(self, d: int, heads: int, ffn_mult: int = 4, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm_q, self.norm_kv, self.norm_ffn = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, heads, dropout=dropout, batch_first=True)
        self.ffn = mlp(d, ffn_mult * d, d, dropout)

    def forward(self, x: Tensor, context: Tensor, pad_mask: Tensor | None = None) -> Tensor:
        kv = self.norm_kv(context)
        x = x + attend(self.attn, self.norm_q(x), kv, pad_mask)
        return x + self.ffn(self.norm_ffn(x))


def attend(attn: nn.MultiheadAttention, q: Tensor, kv: Tensor, pad: Tensor | None) -> Tensor:
    """``attn(q, kv, kv)``, reassociated when few queries read a long context.

    Per head h, with ``q_h = q W_q^h + b_q^h``::

        softmax(q_h (kv W_k^h + b_k^h)^T / sqrt(d_h)) (kv W_v^h + b_v^h)
          = softmax((q_h W_k^h) kv^T / sqrt(d_h)) kv W_v^h + b_v^h

    (``q_h · b_k^h`` is constant over keys, so softmax drops it; attention rows
    sum to 1, so ``b_v^h`` passes through). The right side never projects the
    L_k context tokens: it costs ``L_q (D + H L_k)`` per feature instead of
    ``L_k D``, which wins for the intent workspace's 8 factor queries over a
    456-token prefix and the resampler's queries over patches. Used when it is
    cheaper and attention dropout is inactive; otherwise MultiheadAttention runs.
    """
    lq, lk, d, h = q.shape[1], kv.shape[1], q.shape[2], attn.num_heads
    dropping = attn.training and attn.dropout > 0
    if dropping or not attn._qkv_same_embed_dim or lq * (d + h * lk) >= lk * d:
        return attn(q, kv, kv, key_padding_mask=pad, need_weights=False)[0]
    w_q, w_k, w_v = attn.in_proj_weight.chunk(3)
    b_q, _, b_v = (
        attn.in_proj_bias.chunk(3) if attn.in_proj_bias is not None else (None, None, None)
    )
    dh = d // h
    qh = nn.functional.linear(q, w_q, b_q).unflatten(-1, (h, dh))  # (B, Lq, H, dh)
    a = torch.einsum("bqhe,hed->bhqd", qh, w_k.view(h, dh, d))  # q_h W_k^h: (B, H, Lq, D)
    scores = a @ kv.unsqueeze(1).transpose(-1, -2) / math.sqrt(dh)  # (B, H, Lq, Lk)
    if pad is not None:
        scores = scores.masked_fill(pad[:, None, None, :], float("-inf"))
    c = scores.softmax(-1) @ kv.unsqueeze(1)  # (B, H, Lq, D)
    out = torch.einsum("bhqd,hed->bqhe", c, w_v.view(h, dh, d)).flatten(2)
    if b_v is not None:
        out = out + b_v
    return attn.out_proj(out)


class SelfAttentionBlock(nn.Module):
    """Pre-LN self-attention + FFN."""

    def __init__(self, d: int, heads: int, ffn_mult: int = 4, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm_attn, self.norm_ffn = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, heads, dropout=dropout, batch_first=True)
        self.ffn = mlp(d, ffn_mult * d, d, dropout)

    def forward(self, x: Tensor) -> Tensor:
        h = self.norm_attn(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.ffn(self.norm_ffn(x))
