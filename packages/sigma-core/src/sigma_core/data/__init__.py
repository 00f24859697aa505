"""Data windows and shards: preprocessing, the shard format, the training loader.

Pure torch / numpy / safetensors, independent of the model: readers of concrete
datasets (LeRobot, the paper's shards) produce :class:`Episode` objects or shard
tensors and reuse everything here. This facade is what other packages import.
"""

from sigma_core.data.actions import ActionMode, ActionSpace
from sigma_core.data.base_actions import check_sources as check_base_sources
from sigma_core.data.base_actions import matches as base_actions_match
from sigma_core.data.base_actions import read_record as read_base_actions
from sigma_core.data.dims import DATA_DIMS, check_dims, shard_dims
from sigma_core.data.episodes import Episode, EpisodeSource, InMemorySource, SourceInfo
from sigma_core.data.images import resize_with_pad
from sigma_core.data.loader import (
    ENVIRONMENT_STATE,
    EpochSampler,
    RunDataset,
    ShardDataset,
    collate,
    collate_runs,
    environment_normalizer,
    make_loader,
)
from sigma_core.data.paper import PaperShards, import_paper_shards
from sigma_core.data.paper import data_cameras as paper_cameras
from sigma_core.data.paper import data_chunk as paper_chunk
from sigma_core.data.precompute import precompute_base_actions
from sigma_core.data.prepare import PreprocessOptions, preprocess, read_meta, remove_output
from sigma_core.data.processor import (
    FrameHistory,
    NormalizeObservation,
    ObservationProcessor,
    ResizeWithPad,
    policy_stats,
    to_uint8_frames,
)
from sigma_core.data.stats import Normalizer
from sigma_core.data.windows import WindowRule, action_l2, cut_windows

__all__ = [
    "DATA_DIMS",
    "ENVIRONMENT_STATE",
    "ActionMode",
    "ActionSpace",
    "Episode",
    "EpisodeSource",
    "EpochSampler",
    "FrameHistory",
    "InMemorySource",
    "NormalizeObservation",
    "Normalizer",
    "ObservationProcessor",
    "PaperShards",
    "PreprocessOptions",
    "ResizeWithPad",
    "RunDataset",
    "ShardDataset",
    "SourceInfo",
    "WindowRule",
    "action_l2",
    "base_actions_match",
    "check_base_sources",
    "check_dims",
    "collate",
    "collate_runs",
    "cut_windows",
    "environment_normalizer",
    "import_paper_shards",
    "make_loader",
    "paper_cameras",
    "paper_chunk",
    "policy_stats",
    "precompute_base_actions",
    "preprocess",
    "read_base_actions",
    "read_meta",
    "remove_output",
    "resize_with_pad",
    "shard_dims",
    "to_uint8_frames",
]
