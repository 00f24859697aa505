"""Importing the paper's published .pt shards (fixtures built in that layout)."""

from __future__ import annotations

import collections

import numpy as np
import pytest
import torch

from sigma_core.data import PreprocessOptions, ShardDataset
from sigma_core.data.paper import import_paper_shards
from sigma_core.errors import SigmaUserError

T, H, A = 16, 8, 6


def paper_windows(n_eps: int, length: int, seed: int, cams: int = 2) -> list[dict]:
    """Sliding windows (stride 1) over random-walk episodes, in the paper's field layout."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_eps):
        actions = torch.cumsum(torch.randn(length, A, generator=g), 0)
        for t in range(length - T + 1):
            traj = actions[t : t + T]
            d = (traj[1:] - traj[:-1]).norm(dim=-1)
            out.append(
                {
                    "vision_inputs": torch.rand(cams, 3, 24, 32, generator=g),
                    "robot_state": torch.randn(A, generator=g),
                    "gt_action_vector": traj[0].clone(),
                    "gt_action_chunk": traj[:H].clone(),
                    "gt_action_trajectory": traj.clone(),
                    "avg_action_l2": d.mean().item(),
                    "max_action_l2": d.max().item(),
                    "text": "pink lego brick into the transparent box",
                }
            )
    return out


def opts(**kw) -> PreprocessOptions:
    return PreprocessOptions(
        cameras=["up", "side"], image_size=16, horizon=T, chunk=H, min_action_norm=0, **kw
    )


def test_import_keeps_targets_exactly_and_groups_episodes(tmp_path):
    src = tmp_path / "paper"
    src.mkdir()
    first = paper_windows(3, 20, seed=0)  # 3 episodes x 5 windows
    second = paper_windows(2, 18, seed=1)  # 2 episodes x 3 windows
    torch.save(first, src / "shard_00000.pt")
    columns = {k: [w[k] for w in second] for k in second[0]}  # dict-of-fields layout
    columns["gt_action_trajectory"] = torch.stack(columns["gt_action_trajectory"])
    torch.save(columns, src / "shard_00001.pt")
    meta = import_paper_shards(src, tmp_path / "out", opts(), action_dim=A, state_dim=A)
    assert meta["counts"]["windows_kept"] == 21
    assert meta["counts"]["episodes_kept"] == 5  # pseudo-episodes found by trajectory overlap
    assert meta["counts"]["episodes_in"] == 5  # not the 2 files
    ds = ShardDataset(tmp_path / "out", split="all", normalize=False)
    assert collections.Counter(ds[i]["episode"] for i in range(len(ds))) == {
        1: 5,
        2: 5,
        3: 5,
        1_000_001: 3,
        1_000_002: 3,
    }
    for i, w in enumerate(first + second):
        item = ds[i]
        assert torch.equal(item["trajectory"], w["gt_action_trajectory"])
        assert torch.equal(item["chunk"], w["gt_action_chunk"])
        assert torch.equal(item["vector"], w["gt_action_vector"])
        assert torch.equal(item["state"], w["robot_state"])
        assert item["images"].shape == (2, 1, 3, 16, 16)
    split = meta["split"]
    assert sum(len(v["episodes"]) for v in split.values()) == 5


def test_unsafe_pickle_is_refused(tmp_path):
    src = tmp_path / "paper"
    src.mkdir()
    torch.save([collections.OrderedDict(a=1), {"x": np.float64(1.0), "obj": object}], src / "s.pt")
    with pytest.raises(SigmaUserError, match="refused: loading it needs unsafe unpickling"):
        import_paper_shards(src, tmp_path / "out", opts(), action_dim=A, state_dim=A)
    assert not (tmp_path / "out" / "meta.json").exists()


def test_shape_and_field_errors_name_the_window(tmp_path):
    src = tmp_path / "paper"
    src.mkdir()
    windows = paper_windows(1, 17, seed=0)
    del windows[1]["robot_state"]
    torch.save(windows, src / "shard_00000.pt")
    with pytest.raises(SigmaUserError, match=r"shard_00000.pt window 1: missing field\(s\) robot"):
        import_paper_shards(src, tmp_path / "o1", opts(), action_dim=A, state_dim=A)
    with pytest.raises(SigmaUserError, match=r"gt_action_vector has shape \(6,\), expected \(7,\)"):
        import_paper_shards(src, tmp_path / "o2", opts(), action_dim=7, state_dim=A)
    one_cam = paper_windows(1, 17, seed=0, cams=1)
    torch.save(one_cam, src / "shard_00000.pt")
    with pytest.raises(SigmaUserError, match="vision_inputs has 1 cameras, the spec 2"):
        import_paper_shards(src, tmp_path / "o3", opts(), action_dim=A, state_dim=A)
    with pytest.raises(SigmaUserError, match=r"no \.pt shard files"):
        import_paper_shards(tmp_path, tmp_path / "o4", opts(), action_dim=A, state_dim=A)


def sequence_windows(length: int, chunk: int, seed: int) -> list[dict]:
    """The paper's own layout (§4.1): per window the screen sequence (T, 3, H, W) of one
    camera and the state sequence (T, S); a chunk shorter than the spec default."""
    g = torch.Generator().manual_seed(seed)
    actions = torch.cumsum(torch.randn(length, A, generator=g), 0)
    states = torch.cumsum(torch.randn(length, A, generator=g), 0)
    frames = torch.randint(0, 256, (length, 3, 16, 16), generator=g, dtype=torch.uint8)
    out = []
    for t in range(length - T + 1):
        traj = actions[t : t + T]
        out.append(
            {
                "vision_inputs": frames[t : t + T].clone(),
                "robot_state": states[t : t + T].clone(),
                "gt_action_vector": traj[0].clone(),
                "gt_action_chunk": traj[:chunk].clone(),
                "gt_action_trajectory": traj.clone(),
                "text": "pink lego brick into the transparent box",
                "frame": frames[t].clone(),  # what the observation must be
                "state": states[t].clone(),
            }
        )
    return out


def test_the_papers_sequence_layout_reads_frames_of_one_camera(tmp_path):
    from sigma_core.data import paper_cameras, paper_chunk

    src = tmp_path / "paper"
    src.mkdir()
    windows = sequence_windows(20, chunk=4, seed=0)
    torch.save(
        [{k: v for k, v in w.items() if k not in ("frame", "state")} for w in windows],
        src / "shard_00000.pt",
    )
    assert paper_chunk(src) == 4  # the CLI's default --chunk for these shards
    assert paper_cameras(src, T) == 1  # and its default camera count
    o = PreprocessOptions(cameras=["main"], image_size=16, horizon=T, chunk=4, min_action_norm=0)
    meta = import_paper_shards(src, tmp_path / "out", o, action_dim=A, state_dim=A)
    assert meta["counts"]["windows_kept"] == 5
    how = meta["source"]["interpretation"]
    assert how["vision_inputs"].startswith("(T=16, 3, H, W): frames of one camera")
    assert how["robot_state"].startswith("(T=16, S): the state sequence")
    assert how["gt_action_chunk"].startswith("(H_c=4, A)")
    ds = ShardDataset(tmp_path / "out", split="all", normalize=False)
    for i, w in enumerate(windows):
        item = ds[i]
        assert torch.equal(item["images"][0, 0], w["frame"])  # the window's first frame
        assert torch.equal(item["state"], w["state"])  # and first state
        assert torch.equal(item["chunk"], w["gt_action_chunk"]) and item["chunk"].shape == (4, A)
    two = PreprocessOptions(cameras=["up", "side"], image_size=16, horizon=T, chunk=4)
    with pytest.raises(SigmaUserError, match=r"one camera's frame sequence .* the spec has 2"):
        import_paper_shards(src, tmp_path / "o2", two, action_dim=A, state_dim=A)
