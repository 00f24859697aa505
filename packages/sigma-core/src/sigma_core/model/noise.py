"""The sampler noise of a forward, and a scope that makes it independent of the batch size.

:meth:`SigmaPolicy.forward <sigma_core.model.policy.SigmaPolicy.forward>` draws
the trajectory sampler's noise ``ε ~ N(0, I)`` of shape (B, T, A) from the global
torch generator, through :func:`sampler_noise`. A row's noise then depends on
the batch it is in: with the same seed, row 0 of a batch of 8 and a batch of 1
see different draws from row 1 on, and a frozen checkpoint base (itself a
``SigmaPolicy``) draws after them.

Inside :func:`batch_invariant_noise` every draw is one (1, T, A) draw repeated
over the batch, which is exactly what each row would have drawn in a batch of
one under the same seed. ``sigma eval`` replays several episodes per forward in
this scope, so its metrics equal those of the one-episode-at-a-time replay (up
to float rounding of the batched matmuls), stochastic samplers included.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor

_INVARIANT: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "sigma_batch_invariant_noise", default=False
)


@contextmanager
def batch_invariant_noise() -> Iterator[None]:
    """A scope in which :func:`sampler_noise` gives every row of a batch the same draw."""
    token = _INVARIANT.set(True)
    try:
        yield
    finally:
        _INVARIANT.reset(token)


def sampler_noise(
    batch_size: int, horizon: int, action_dim: int, device: torch.device | str
) -> Tensor:
    """``ε ~ N(0, I)`` of shape (batch_size, horizon, action_dim) from the global generator.

    Inside :func:`batch_invariant_noise`: one (1, horizon, action_dim) draw repeated
    ``batch_size`` times (each row sees what it would alone); outside: one draw per row.
    """
    if _INVARIANT.get():
        return torch.randn(1, horizon, action_dim, device=device).repeat(batch_size, 1, 1)
    return torch.randn(batch_size, horizon, action_dim, device=device)


__all__ = ["batch_invariant_noise", "sampler_noise"]
