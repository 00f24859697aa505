"""A uniform binning action tokenizer: continuous actions <-> discrete tokens."""

from __future__ import annotations

import torch
from torch import Tensor


class BinningTokenizer:
    """Split ``[low, high]`` into ``num_bins`` equal bins per action dimension.

    ``encode(a) = clamp(floor((a - low) / width), 0, num_bins - 1)``;
    ``decode(k) = low + (k + 1/2) * width`` (the bin centre), so
    ``|decode(encode(a)) - a| <= width / 2`` inside the range.
    """

    def __init__(self, low: float, high: float, num_bins: int) -> None:
        if high <= low or num_bins < 2:
            raise ValueError("need high > low and num_bins >= 2")
        self.low, self.high, self.num_bins = float(low), float(high), int(num_bins)
        self.width = (self.high - self.low) / self.num_bins

    def centers(
        self, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
    ) -> Tensor:
        """Bin centres (num_bins,)."""
        k = torch.arange(self.num_bins, device=device, dtype=dtype)
        return self.low + (k + 0.5) * self.width

    def encode(self, actions: Tensor) -> Tensor:
        """Actions (...,) -> token ids (...,) long."""
        k = torch.floor((actions - self.low) / self.width)
        return k.clamp(0, self.num_bins - 1).long()

    def decode(self, tokens: Tensor) -> Tensor:
        """Token ids (...,) -> bin-centre actions (...,)."""
        return self.low + (tokens.float() + 0.5) * self.width

    def decode_probs(self, probs: Tensor) -> Tensor:
        """Expected action under per-bin probabilities (..., num_bins) -> (...)."""
        return probs @ self.centers(probs.device, probs.dtype)
