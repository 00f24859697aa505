"""A stochastic trajectory head: trained by noise prediction (DDPM), sampled by DDIM.

Training (``loss``): ``t ~ U{0..N-1}``, ``ε ~ N(0, I)``,
``x_t = sqrt(ᾱ_t)·x_0 + sqrt(1 − ᾱ_t)·ε`` with ``ᾱ_t = Π_{s≤t} (1 − β_s)`` and a linear
β schedule; the denoiser ``f_θ(x_t, t | c)`` predicts either the clean trajectory
(``prediction: sample``, loss ``mean((f_θ − x_0)²)`` per sample, the default: it
learns fast on small data) or the noise (``prediction: epsilon``, the original
DDPM, loss ``mean((f_θ − ε)²)``). Either gives both estimates:
``ε̂ = (x_t − sqrt(ᾱ_t)·x̂_0) / sqrt(1 − ᾱ_t)``.

Sampling (``forward``, deterministic DDIM, η = 0): from ``x = noise`` at t = N−1,
over ``sample_steps`` evenly spaced timesteps,
``x_{t'} = sqrt(ᾱ_{t'})·x̂_0 + sqrt(1 − ᾱ_{t'})·ε̂``; the last step returns ``x̂_0``.
The model passes the same ``noise`` to the τ and τ = 0 passes, so their difference
is the telepathy pathway's, not the sampler's.

The condition ``c`` is the mean of the action queries plus ``c_act``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from sigma_core import Dims, TrajectoryBranch
from sigma_example_ddim.plugin import DdimConfig


class DdimTrajectory(TrajectoryBranch):
    name = "ddim"  # must equal the registered name
    config_class = DdimConfig  # must be the registered config

    def __init__(self, config: DdimConfig, dims: Dims) -> None:
        super().__init__(config, dims)
        d, a, h = dims.d_model, dims.action_dim, config.width
        betas = torch.linspace(config.beta_start, config.beta_end, config.train_timesteps)
        # buffers, not parameters: saved and moved with the module, never trained
        self.register_buffer("alpha_bar", torch.cumprod(1 - betas, 0), persistent=False)
        self.cond = nn.Linear(d, h)
        self.time = nn.Sequential(nn.Linear(16, h), nn.SiLU(), nn.Linear(h, h))
        self.eps = nn.Sequential(
            nn.Linear(dims.horizon * a + h, 2 * h),
            nn.SiLU(),
            nn.Linear(2 * h, 2 * h),
            nn.SiLU(),
            nn.Linear(2 * h, dims.horizon * a),
        )

    def _features(self, t: Tensor) -> Tensor:
        freqs = torch.exp(torch.linspace(0, math.log(1000), 8, device=t.device))
        angle = t.float()[:, None] / self.config.train_timesteps * freqs
        return torch.cat([angle.sin(), angle.cos()], -1)

    def denoise(self, x_t: Tensor, t: Tensor, queries: Tensor, c_act: Tensor) -> Tensor:
        """f_θ(x_t, t | c): (B, T, A), t (B,) long -> x̂_0 or ε̂ (``config.prediction``)."""
        c = self.cond(queries.mean(1) + c_act) + self.time(self._features(t))
        out = self.eps(torch.cat([x_t.flatten(1), c], -1))
        return out.view_as(x_t)

    def estimates(
        self, x_t: Tensor, t: Tensor, queries: Tensor, c_act: Tensor
    ) -> tuple[Tensor, Tensor]:
        """(x̂_0, ε̂) at timestep ``t``, whichever the denoiser predicts."""
        ab = self.alpha_bar[t].view(-1, 1, 1)
        out = self.denoise(x_t, t, queries, c_act)
        if self.config.prediction == "sample":
            return out, (x_t - ab.sqrt() * out) / (1 - ab).sqrt()
        return (x_t - (1 - ab).sqrt() * out) / ab.sqrt(), out

    def loss(self, queries: Tensor, c_act: Tensor, target: Tensor) -> Tensor:
        """Per-sample denoising loss (B,) on the target trajectory ``x_0``."""
        b = target.shape[0]
        t = torch.randint(0, self.config.train_timesteps, (b,), device=target.device)
        eps = torch.randn_like(target)
        ab = self.alpha_bar[t].view(b, 1, 1)
        x_t = ab.sqrt() * target + (1 - ab).sqrt() * eps
        want = target if self.config.prediction == "sample" else eps
        return (self.denoise(x_t, t, queries, c_act) - want).pow(2).flatten(1).mean(1)

    def forward(self, queries: Tensor, c_act: Tensor, noise: Tensor | None = None) -> Tensor:
        """DDIM sample of the trajectory (B, T, A) from ``noise`` (drawn when not given)."""
        b, n = queries.shape[0], self.config.train_timesteps
        if noise is None:
            noise = torch.randn(b, self.dims.horizon, self.dims.action_dim, device=queries.device)
        steps = torch.linspace(n - 1, 0, min(self.config.sample_steps, n)).round().long()
        x = noise.to(queries.dtype)
        for i, step in enumerate(steps.tolist()):
            t = torch.full((b,), step, dtype=torch.long, device=x.device)
            x0, eps = self.estimates(x, t, queries, c_act)
            if i == len(steps) - 1:
                return x0
            ab_next = self.alpha_bar[steps[i + 1]]
            x = ab_next.sqrt() * x0 + (1 - ab_next).sqrt() * eps
        return x
