"""``make_sigma_pre_post_processors``: LeRobot's action normaliser from the policy's stats."""

from __future__ import annotations

from pathlib import Path
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
    """Pre: rename, batch dim, mean/std normalisation of the actions, device.

    Post: un-normalise actions, to CPU. Frames (any size) and the state pass
    through to the policy, whose observation processor (Sigma's: resize with pad,
    frame history, normalisation with ``config.normalization_stats``) reads them;
    the task text is Sigma's instruction.

    Statistics: ``dataset_stats`` when given (and they fill
    ``config.normalization_stats`` when the policy has none saved), else the
    policy's saved ``normalization_stats``: a saved Sigma policy needs no dataset.
    """
    from lerobot_policy_sigma.modeling_sigma import stats_as_lists

    if dataset_stats is not None and not config.normalization_stats:
        config.normalization_stats = stats_as_lists(dataset_stats)
    if dataset_stats is None and config.normalization_stats:
        dataset_stats = {
            k: {s: torch.tensor(v, dtype=torch.float32) for s, v in feature.items()}
            for k, feature in config.normalization_stats.items()
        }
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


def write_processors(directory: str | Path) -> None:
    """Save LeRobot's processor pipelines of the Sigma policy whose config.json is in
    ``directory`` (``sigma export``), with its saved statistics: LeRobot's tools load
    them by ``--policy.path`` with no dataset at hand."""
    from lerobot.configs.policies import PreTrainedConfig

    config = PreTrainedConfig.from_pretrained(directory)
    pre, post = make_sigma_pre_post_processors(config)  # type: ignore[arg-type]
    pre.save_pretrained(directory)
    post.save_pretrained(directory)
