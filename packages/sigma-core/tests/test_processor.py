"""sigma_core.data.ObservationProcessor: the steps every observation path runs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sigma_core import SigmaUserError
from sigma_core.data import (
    FrameHistory,
    ObservationProcessor,
    ResizeWithPad,
    policy_stats,
    resize_with_pad,
    to_uint8_frames,
)

STATS = {"observation.state": {"mean": [1.0, 2.0], "std": [2.0, 4.0]}}


def test_float_frames_come_back_as_the_uint8_bytes_they_were_made_from():
    g = torch.Generator().manual_seed(0)
    u = torch.randint(0, 256, (61, 97, 3), dtype=torch.uint8, generator=g)
    as_float = u.permute(2, 0, 1).float() / 255  # what LeRobot hands a policy
    assert torch.equal(to_uint8_frames(as_float), u.permute(2, 0, 1)[None])
    assert torch.equal(to_uint8_frames(u.numpy()), u.permute(2, 0, 1)[None])  # HWC numpy
    resized = ResizeWithPad(32)(as_float)
    assert torch.equal(resized, resize_with_pad(u.permute(2, 0, 1)[None].contiguous(), 32))
    assert resized.shape == (1, 3, 32, 32) and resized[..., :5, :].max() == 0  # letterboxed


def test_frame_history_repeats_the_first_frame_and_keeps_batch_dims():
    history = FrameHistory(3)
    frames = [torch.full((2, 4, 3, 8, 8), v, dtype=torch.uint8) for v in (1, 2, 3, 4)]
    first = history(frames[0])
    assert first.shape == (2, 4, 3, 3, 8, 8) and first[0, 0, :, 0, 0, 0].tolist() == [1, 1, 1]
    for f in frames[1:]:
        window = history(f)
    assert window[1, 3, :, 0, 0, 0].tolist() == [2, 3, 4]  # oldest first
    history.reset()
    history.push(None)
    with pytest.raises(RuntimeError, match="not rendered"):
        history.window()


def test_processor_batches_one_step_with_the_policys_statistics():
    p = ObservationProcessor(["a", "b"], 16, 2, STATS)
    img = np.full((480, 640, 3), 200, np.uint8)
    batch = p({"a": img, "b": img}, np.array([3.0, 6.0], np.float32), "go")
    assert batch.images.shape == (1, 2, 2, 3, 16, 16) and batch.texts == ["go"]
    assert batch.state.tolist() == [[1.0, 1.0]]
    with pytest.raises(SigmaUserError, match="no camera"):
        p({"a": img}, np.zeros(2), "go")
    with pytest.raises(SigmaUserError, match=r"observation\.state"):
        ObservationProcessor(["a"], 16, 1, {})
    with pytest.raises(SigmaUserError, match="environment_state"):
        ObservationProcessor(["a"], 16, 1, STATS, environment_state_dim=3)
    kept = policy_stats({**STATS, "action": {"mean": [0.0]}, "timestamp": {"mean": [0.0]}})
    assert set(kept) == {"observation.state", "action"}
