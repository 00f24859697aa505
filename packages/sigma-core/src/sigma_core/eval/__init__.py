"""Evaluation: offline replay on held-out episodes, paired intervals, the paper's CHECK A/B."""

from sigma_core.eval.replay import METRICS, Source, load_source, replay
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
    "METRICS",
    "SCHEMA",
    "STAGES",
    "Interval",
    "Source",
    "evaluate",
    "load_source",
    "paired_bootstrap",
    "replay",
    "wilson",
]
