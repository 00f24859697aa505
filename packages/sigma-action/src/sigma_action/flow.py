"""The paper's trajectory branch: a DiT denoiser trained by flow matching (paper §3)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from sigma_action.config import FlowDiTConfig
from sigma_core import Dims, TrajectoryBranch
from sigma_core.layers import mlp


def timestep_features(t: Tensor, n: int) -> Tensor:
    """Sinusoidal features of t in [0, 1]: (B,) -> (B, 2n)."""
    freqs = torch.exp(torch.linspace(0, math.log(1000.0), n, device=t.device, dtype=t.dtype))
    angles = t[:, None] * freqs[None] * math.pi
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    """adaLN: ``x * (1 + scale) + shift`` with per-sample (B, D) shift and scale."""
    return x * (1 + scale[:, None]) + shift[:, None]


class DiTBlock(nn.Module):
    """DiT block with adaLN-Zero conditioning and cross-attention to the action queries.

    ``(s1, c1, g1, s2, c2, g2, s3, c3, g3) = W c`` (zero-init, so each block starts as identity);
    ``x += g1 * SelfAttn(adaLN(x))``; ``x += g2 * CrossAttn(adaLN(x), Q)``;
    ``x += g3 * MLP(adaLN(x))``.
    """

    def __init__(self, d: int, heads: int, mlp_mult: int) -> None:
        super().__init__()
        self.norms = nn.ModuleList(nn.LayerNorm(d, elementwise_affine=False) for _ in range(3))
        self.self_attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.mlp = mlp(d, mlp_mult * d, d)
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(d, 9 * d))
        nn.init.zeros_(self.ada[-1].weight)
        nn.init.zeros_(self.ada[-1].bias)

    def forward(self, x: Tensor, cond: Tensor, queries: Tensor) -> Tensor:
        s1, c1, g1, s2, c2, g2, s3, c3, g3 = self.ada(cond).chunk(9, dim=-1)
        h = modulate(self.norms[0](x), s1, c1)
        x = x + g1[:, None] * self.self_attn(h, h, h, need_weights=False)[0]
        h = modulate(self.norms[1](x), s2, c2)
        x = x + g2[:, None] * self.cross_attn(h, queries, queries, need_weights=False)[0]
        h = modulate(self.norms[2](x), s3, c3)
        return x + g3[:, None] * self.mlp(h)


class FlowDiT(TrajectoryBranch):
    """Trajectory DiT with flow matching (rectified flow).

    Training: ``x_0 ~ N(0, I)``, ``x_1`` = target trajectory, ``t ~ U(0, 1)``,
    ``x_t = (1 - t) x_0 + t x_1``; loss ``|| v_theta(x_t, t | Q, c_act) - (x_1 - x_0) ||^2``.
    Sampling: ``x <- x + v_theta(x, t) / N`` for ``t = 0, 1/N, ..., (N-1)/N`` from
    ``x = noise``. The condition ``c = MLP(t features) + W c_act`` drives adaLN in
    every block; the blocks also cross-attend to the action queries Q. The DiT
    runs at ``width`` (default D); Q and c_act are projected to it when narrower,
    which keeps the N-step sampler cheap next to a D = 2048 backbone.
    """

    name = "flow-dit"
    config_class = FlowDiTConfig

    def __init__(self, config: FlowDiTConfig, dims: Dims) -> None:
        super().__init__(config, dims)
        a, d = dims.action_dim, config.width or dims.d_model
        if d % config.num_heads:
            raise ValueError(f"trajectory.num_heads={config.num_heads} must divide width {d}")
        self.embed = nn.Linear(a, d)
        self.pos = nn.Parameter(torch.randn(dims.horizon, d) * 0.02)
        self.time = mlp(2 * config.time_frequencies, d, d)
        self.condition = nn.Linear(dims.d_model, d)
        self.query_proj = nn.Identity() if d == dims.d_model else nn.Linear(dims.d_model, d)
        self.blocks = nn.ModuleList(
            DiTBlock(d, config.num_heads, config.mlp_mult) for _ in range(config.num_layers)
        )
        self.final_norm = nn.LayerNorm(d, elementwise_affine=False)
        self.final_ada = nn.Sequential(nn.SiLU(), nn.Linear(d, 2 * d))
        self.out = nn.Linear(d, a)

    def velocity(self, x_t: Tensor, t: Tensor, queries: Tensor, c_act: Tensor) -> Tensor:
        """v_theta(x_t, t | Q, c_act): (B, T, A), t (B,) -> (B, T, A)."""
        cond = self.time(timestep_features(t, self.config.time_frequencies)) + self.condition(c_act)
        h = self.embed(x_t) + self.pos
        queries = self.query_proj(queries)
        for block in self.blocks:
            h = block(h, cond, queries)
        shift, scale = self.final_ada(cond).chunk(2, dim=-1)
        return self.out(modulate(self.final_norm(h), shift, scale))

    def forward(self, queries: Tensor, c_act: Tensor, noise: Tensor | None = None) -> Tensor:
        b = queries.shape[0]
        if noise is None:
            noise = torch.randn(b, self.dims.horizon, self.dims.action_dim, device=queries.device)
        x, n = noise.to(queries.dtype), self.config.num_steps
        for i in range(n):
            t = torch.full((b,), i / n, device=x.device, dtype=x.dtype)
            x = x + self.velocity(x, t, queries, c_act) / n
        return x

    def loss(self, queries: Tensor, c_act: Tensor, target: Tensor) -> Tensor:
        """Per-sample flow-matching loss (B,)."""
        x_0 = torch.randn_like(target)
        t = torch.rand(target.shape[0], device=target.device, dtype=target.dtype)
        x_t = (1 - t[:, None, None]) * x_0 + t[:, None, None] * target
        v = self.velocity(x_t, t, queries, c_act)
        return (v - (target - x_0)).pow(2).flatten(1).mean(1)
