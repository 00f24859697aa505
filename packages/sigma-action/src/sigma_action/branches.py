"""Action branches at the three scales (paper §3): vector, chunk, trajectory."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from sigma_action.config import (
    ChunkMlpConfig,
    ChunkPoolingConfig,
    MlpTrajectoryConfig,
    MlpVectorConfig,
    TokenVectorConfig,
)
from sigma_action.tokenizer import BinningTokenizer
from sigma_core import ChunkBranch, Dims, TrajectoryBranch, VectorBranch
from sigma_core.layers import mlp


def pool_condition(queries: Tensor, c_act: Tensor) -> Tensor:
    """``[mean_n Q; c_act]`` (B, 2D): the summary every pooled branch reads."""
    return torch.cat([queries.mean(dim=1), c_act], dim=-1)


class PooledMlpHead(nn.Module):
    """``MLP_GELU([mean Q; c_act])`` reshaped to (B, steps, A): the regression heads' body."""

    def __init__(self, d: int, hidden_mult: int, steps: int, action_dim: int) -> None:
        super().__init__()
        self.steps = steps
        self.mlp = mlp(2 * d, hidden_mult * 2 * d, steps * action_dim)

    def forward(self, queries: Tensor, c_act: Tensor) -> Tensor:
        return self.mlp(pool_condition(queries, c_act)).unflatten(-1, (self.steps, -1))


class TokenVector(VectorBranch):
    """Token head + binning tokenizer: ``logits = MLP([mean Q; c_act])`` (B, A, bins).

    Decodes by expectation ``sum_k softmax(logits)_k * centre_k`` (differentiable,
    default) or argmax; trains with cross-entropy on ``encode(target)``.
    """

    name = "token"
    config_class = TokenVectorConfig

    def __init__(self, config: TokenVectorConfig, dims: Dims) -> None:
        super().__init__(config, dims)
        d = dims.d_model
        self.tokenizer = BinningTokenizer(config.low, config.high, config.num_bins)
        self.head = mlp(2 * d, 2 * d, dims.action_dim * config.num_bins)

    def logits(self, queries: Tensor, c_act: Tensor) -> Tensor:
        """Token logits (B, A, num_bins)."""
        return self.head(pool_condition(queries, c_act)).unflatten(-1, (self.dims.action_dim, -1))

    def forward(self, queries: Tensor, c_act: Tensor) -> Tensor:
        logits = self.logits(queries, c_act)
        if self.config.decode == "argmax":
            return self.tokenizer.decode(logits.argmax(-1))
        return self.tokenizer.decode_probs(logits.softmax(-1))

    def loss(self, queries: Tensor, c_act: Tensor, target: Tensor) -> Tensor:
        """Per-sample cross-entropy over the A action tokens (B,)."""
        logits = self.logits(queries, c_act)
        ce = nn.functional.cross_entropy(
            logits.flatten(0, 1), self.tokenizer.encode(target).flatten(), reduction="none"
        )
        return ce.view(target.shape).mean(-1)


class ChunkPooling(ChunkBranch):
    """Chunk branch of the paper: ``chunk = W [pool(Q); c_act]`` reshaped to (B, H, A).

    ``pool`` is the mean over queries or attention pooling with one learnable query.
    """

    name = "chunk-pooling"
    config_class = ChunkPoolingConfig

    def __init__(self, config: ChunkPoolingConfig, dims: Dims) -> None:
        super().__init__(config, dims)
        d = dims.d_model
        if config.pooling == "attention":
            self.pool_score = nn.Linear(d, 1)
        self.head = nn.Linear(2 * d, dims.chunk_horizon * dims.action_dim)

    def forward(self, queries: Tensor, c_act: Tensor) -> Tensor:
        if self.config.pooling == "attention":
            weights = self.pool_score(queries).softmax(dim=1)
            pooled = torch.cat([(weights * queries).sum(1), c_act], dim=-1)
        else:
            pooled = pool_condition(queries, c_act)
        return self.head(pooled).unflatten(-1, (self.dims.chunk_horizon, -1))


class MlpVector(VectorBranch):
    """Regression alternative to the token head: ``a_t = MLP_GELU([mean Q; c_act])`` (B, A)."""

    name = "mlp"
    config_class = MlpVectorConfig

    def __init__(self, config: MlpVectorConfig, dims: Dims) -> None:
        super().__init__(config, dims)
        self.head = PooledMlpHead(dims.d_model, config.hidden_mult, 1, dims.action_dim)

    def forward(self, queries: Tensor, c_act: Tensor) -> Tensor:
        return self.head(queries, c_act).squeeze(1)


class ChunkMlp(ChunkBranch):
    """Non-linear alternative to pooling: ``chunk = MLP_GELU([mean Q; c_act])`` -> (B, H, A)."""

    name = "chunk-mlp"
    config_class = ChunkMlpConfig

    def __init__(self, config: ChunkMlpConfig, dims: Dims) -> None:
        super().__init__(config, dims)
        d, a = dims.d_model, dims.action_dim
        self.head = PooledMlpHead(d, config.hidden_mult, dims.chunk_horizon, a)

    def forward(self, queries: Tensor, c_act: Tensor) -> Tensor:
        return self.head(queries, c_act)


class MlpTrajectory(TrajectoryBranch):
    """Deterministic regression of the whole window: ``MLP([mean Q; c_act])`` -> (B, T, A)."""

    name = "mlp"
    config_class = MlpTrajectoryConfig

    def __init__(self, config: MlpTrajectoryConfig, dims: Dims) -> None:
        super().__init__(config, dims)
        self.head = PooledMlpHead(dims.d_model, config.hidden_mult, dims.horizon, dims.action_dim)

    def forward(self, queries: Tensor, c_act: Tensor, noise: Tensor | None = None) -> Tensor:
        return self.head(queries, c_act)
