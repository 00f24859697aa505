"""Data windows and shards: preprocessing, the shard format, the training loader.

Pure torch / numpy / safetensors; readers of concrete datasets (LeRobot, the
paper's shards) produce :class:`~sigma_core.data.episodes.Episode` objects or
shard tensors and reuse everything here.
"""

from sigma_core.data.episodes import Episode, EpisodeSource, InMemorySource, SourceInfo
from sigma_core.data.loader import ShardDataset, collate, make_loader
from sigma_core.data.prepare import PreprocessOptions, preprocess, read_meta
from sigma_core.data.windows import WindowRule, cut_windows

__all__ = [
    "Episode",
    "EpisodeSource",
    "InMemorySource",
    "PreprocessOptions",
    "ShardDataset",
    "SourceInfo",
    "WindowRule",
    "collate",
    "cut_windows",
    "make_loader",
    "preprocess",
    "read_meta",
]
