"""``base_policy: pi05``: a_base = π0.5's action chunk, deterministic and frozen."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from sigma_core import Dims
from sigma_lerobot.base import LeRobotBase, LoadedPolicy
from sigma_pi05.config import Pi05BaseConfig
from sigma_pi05.loading import adapters_disabled, shared_pi05


class Pi05Base(LeRobotBase):
    """π0.5's actions as a_base (:class:`~sigma_lerobot.base.LeRobotBase` on PI05Policy).

    As for any LeRobot base, ``A = post(predict_action_chunk(pre(x)))`` with
    LeRobot's π0.5 processors (quantile normalisation, the state written into the
    prompt, PaliGemma tokens from ``tokenizer`` instead of the hub), here with one
    fixed noise draw ``ε ~ N(0, I)`` (seed ``noise_seed``, the same for every
    sample, so a window's a_base does not depend on its batch)::

        a_base.vector = A[:, 0],  a_base.chunk = A[:, :H_c],  a_base.trajectory = A[:, :T]

    π0.5 is the one shared with ``backbone: pi05`` and ``vision: pi05-siglip``; it
    acts with their LoRA bypassed. pi05_base pads state and actions to 32 dims:
    the spec's first ``state_dim`` / ``action_dim`` are used.
    """

    name = "pi05"
    config_class = Pi05BaseConfig
    pads_dims = True  # pi05_base pads state and actions to 32 dims

    def load(self, config: Any, dims: Dims) -> LoadedPolicy:
        loaded = shared_pi05(config, dims)
        self.tokenizer = loaded.tokenizer
        return LoadedPolicy(loaded.policy, loaded.directory, loaded.record)

    @property
    def pi05(self) -> torch.nn.Module:
        """LeRobot's PI05Policy (the shared, frozen one)."""
        return self.policy

    def make_pipelines(self, stats: dict[str, dict[str, Tensor]]) -> tuple[Any, Any]:
        from lerobot.policies.pi05 import processor_pi05
        from lerobot.processor import TokenizerProcessorStep

        # LeRobot hard-codes the hub tokenizer google/paligemma-3b-pt-224; give it ours
        step = functools.partial(TokenizerProcessorStep, tokenizer=self.tokenizer)
        original = processor_pi05.TokenizerProcessorStep
        processor_pi05.TokenizerProcessorStep = step
        try:
            return processor_pi05.make_pi05_pre_post_processors(self.policy.config, stats)
        finally:
            processor_pi05.TokenizerProcessorStep = original

    def preprocessor_overrides(self) -> dict[str, Any]:
        return super().preprocessor_overrides() | {
            "tokenizer_processor": {"tokenizer": self.tokenizer}
        }

    def noise(self, batch_size: int, device: torch.device) -> Tensor:
        """The fixed denoiser noise ε (one draw, repeated over the batch)."""
        pc = self.policy.config
        g = torch.Generator().manual_seed(self.config.noise_seed)
        eps = torch.randn(1, pc.chunk_size, pc.max_action_dim, generator=g)
        return eps.expand(batch_size, -1, -1).to(device)

    def predict(self, inputs: dict[str, Any], batch_size: int, device: torch.device) -> Tensor:
        kwargs = {"num_steps": self.config.num_steps} if self.config.num_steps else {}
        with adapters_disabled(self.policy):
            return self.policy.predict_action_chunk(
                inputs, noise=self.noise(batch_size, device), **kwargs
            )

    @classmethod
    def contract_config(cls, workdir: Path | None = None, dims: Dims | None = None) -> Any:
        """A shrunken π0.5 saved under ``workdir`` (offline)."""
        from sigma_pi05.testing import contract_source

        return Pi05BaseConfig(**contract_source(workdir, dims))
