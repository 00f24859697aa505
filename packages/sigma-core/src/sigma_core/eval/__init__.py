"""Evaluation: offline replay on held-out episodes, paired intervals, the paper's CHECK A/B."""

from sigma_core.eval.device import DEVICES, resolve_device
from sigma_core.eval.replay import (
    EPISODES_PER_BATCH,
    METRICS,
    Source,
    open_source,
    replay,
    replay_source,
)
from sigma_core.eval.report import (
    CLOSED_LOOP_COMPARED,
    CLOSED_LOOP_EPISODE_FIELDS,
    SCHEMA,
    STAGES,
    evaluate,
)
from sigma_core.eval.stats import Interval, paired_bootstrap, wilson

__all__ = [
    "CLOSED_LOOP_COMPARED",
    "CLOSED_LOOP_EPISODE_FIELDS",
    "DEVICES",
    "EPISODES_PER_BATCH",
    "METRICS",
    "SCHEMA",
    "STAGES",
    "Interval",
    "Source",
    "evaluate",
    "open_source",
    "paired_bootstrap",
    "replay",
    "replay_source",
    "resolve_device",
    "wilson",
]
