"""Small transformer building blocks shared by components of every workspace."""

from __future__ import annotations

from torch import Tensor, nn


def mlp(d_in: int, d_hidden: int, d_out: int, dropout: float = 0.0) -> nn.Sequential:
    """Two-layer MLP with GELU: Linear -> GELU -> Dropout -> Linear."""
    return nn.Sequential(
        nn.Linear(d_in, d_hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(d_hidden, d_out)
    )


class CrossAttentionBlock(nn.Module):
    """Pre-LN cross-attention + FFN: ``x = x + Attn(LN(x), LN(ctx)); x = x + FFN(LN(x))``."""

    def __init__(self, d: int, heads: int, ffn_mult: int = 4, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm_q, self.norm_kv, self.norm_ffn = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, heads, dropout=dropout, batch_first=True)
        self.ffn = mlp(d, ffn_mult * d, d, dropout)

    def forward(self, x: Tensor, context: Tensor, pad_mask: Tensor | None = None) -> Tensor:
        kv = self.norm_kv(context)
        x = x + self.attn(self.norm_q(x), kv, kv, key_padding_mask=pad_mask, need_weights=False)[0]
        return x + self.ffn(self.norm_ffn(x))


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
