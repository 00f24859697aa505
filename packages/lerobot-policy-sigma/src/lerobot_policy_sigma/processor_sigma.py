"""``make_sigma_pre_post_processors``: LeRobot's normaliser steps from the dataset stats."""

from __future__ import annotations

from typing import Any

import torch
from lerobot.processor import (
    PolicyAction,
    PolicyProcessorPipeline,
    make_default_policy_processor_steps,
    make_policy_processor_pipelines,
)

from lerobot_policy_sigma.configuration_sigma import SigmaConfig


def make_sigma_pre_post_processors(
    config: SigmaConfig,
    dataset_stats: dict[str, dict[str, torch.Tensor]] | None = None,
    **kwargs: Any,
) -> tuple[
    PolicyProcessorPipeline[dict[str, Any], dict[str, Any]],
    PolicyProcessorPipeline[PolicyAction, PolicyAction],
]:
    """Pre: rename, batch dim, mean/std normalisation (state, action), device.

    Post: un-normalise actions, to CPU. The task text passes through to the
    policy, which reads it as Sigma's instruction.
    """
    steps = make_default_policy_processor_steps(config, dataset_stats)
    return make_policy_processor_pipelines(
        input_steps=[
            steps.rename_observations,
            steps.add_batch_dim,
            steps.normalize,
            steps.to_device,
        ],
        output_steps=[steps.unnormalize, steps.to_cpu],
    )
