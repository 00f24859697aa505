"""Data windows and shards: preprocessing, the shard format, the training loader.

Pure torch / numpy / safetensors, independent of the model: readers of concrete
datasets (LeRobot, the paper's shards) produce :class:`Episode` objects or shard
tensors and reuse everything here. This facade is what other packages import.
"""

from sigma_core.data.dims import DATA_DIMS, check_dims, shard_dims
from sigma_core.data.episodes import Episode, EpisodeSource, InMemorySource, SourceInfo
from sigma_core.data.images import resize_with_pad
from sigma_core.data.loader import (
    EpochSampler,
    RunDataset,
    ShardDataset,
    collate,
    collate_runs,
    make_loader,
)
from sigma_core.data.paper import PaperShards, import_paper_shards
from sigma_core.data.paper import data_chunk as paper_chunk
from sigma_core.data.prepare import PreprocessOptions, preprocess, read_meta, remove_output
from sigma_core.data.stats import Normalizer
from sigma_core.data.windows import WindowRule, action_l2, cut_windows

__all__ = [
    "DATA_DIMS",
    "Episode",
    "EpisodeSource",
    "EpochSampler",
    "InMemorySource",
    "Normalizer",
    "PaperShards",
    "PreprocessOptions",
    "RunDataset",
    "ShardDataset",
    "SourceInfo",
    "WindowRule",
    "action_l2",
    "check_dims",
    "collate",
    "collate_runs",
    "cut_windows",
    "import_paper_shards",
    "make_loader",
    "paper_chunk",
    "preprocess",
    "read_meta",
    "remove_output",
    "resize_with_pad",
    "shard_dims",
]
