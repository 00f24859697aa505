"""sigma preprocess on datasets written with LeRobot's own writer, and every bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from sigma_cli.main import app
from sigma_core.data import ShardDataset
from sigma_lerobot.schema import FPS, ROBOT_TYPE, so101_features

TASK = "pink lego brick into the transparent box"


def write(
    root: Path,
    lengths: list[int],
    size: tuple[int, int] = (32, 32),
    cams: tuple[str, ...] = ("up", "side"),
    video: bool = False,
    features: dict | None = None,
    nan_at: tuple[int, int] | None = None,
) -> list[np.ndarray]:
    """A LeRobot v3 dataset of smooth random-walk episodes; returns each episode's actions."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    feats = features or so101_features(dict.fromkeys(cams, size), use_videos=video)
    ds = LeRobotDataset.create(
        "lerobot/svla_so101_pickplace",
        fps=FPS,
        root=root,
        robot_type=ROBOT_TYPE,
        features=feats,
        use_videos=video,
    )
    rng = np.random.default_rng(0)
    actions = []
    for e, n in enumerate(lengths):
        act = np.cumsum(rng.normal(0, 2, (n, 6)), 0).astype(np.float32)
        if nan_at and nan_at[0] == e:
            act[nan_at[1], 0] = np.nan
        yy, xx = np.mgrid[: size[0], : size[1]]
        for t in range(n):
            frame = {"task": TASK}
            for k, f in feats.items():
                if k.startswith("observation.images."):
                    img = ((xx + yy + 3 * t) % 256).astype(np.uint8)
                    frame[k] = np.repeat(img[..., None], 3, axis=2)
                elif k != "action":
                    frame[k] = act[t, : f["shape"][0]] + 0.5
            frame["action"] = act[t] if feats["action"]["shape"][0] == 6 else np.r_[act[t], 0]
            ds.add_frame(frame)
        ds.save_episode()
        actions.append(act)
    ds.finalize()
    return actions


def run(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)


def test_svla_layout_480x640_video_preprocesses(tmp_path):
    actions = write(tmp_path / "svla", [24, 20], size=(480, 640), video=True)
    res = run(
        "preprocess",
        "--dataset",
        tmp_path / "svla",
        "--out",
        tmp_path / "out",
        "--camera-map",
        "overhead=up,wrist=observation.images.side",
        "--json",
    )
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout[res.stdout.index("{") :])
    assert summary["windows_kept"] == (24 - 15) + (20 - 15)
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    assert meta["source"]["cameras"] == {
        "overhead": "observation.images.up",
        "wrist": "observation.images.side",
    }
    assert meta["source"]["codebase_version"].startswith("v3")
    assert meta["source"]["robot_type"] == ROBOT_TYPE and meta["source"]["fps"] == 30
    assert meta["versions"]["lerobot"] == "0.6.1"
    ds = ShardDataset(tmp_path / "out", split="all", normalize=False)
    for i in range(len(ds)):
        item = ds[i]
        act = actions[item["episode"]]
        t = int(np.flatnonzero((act == item["vector"].numpy()).all(1))[0])
        assert torch.equal(item["trajectory"], torch.from_numpy(act[t : t + 16]))
    img = ds[0]["images"]  # (C, F, 3, 96, 96): 480x640 -> 72x96 content, 12 black rows each side
    assert img.shape == (2, 1, 3, 96, 96)
    assert img[:, :, :, :12].max() == 0 and img[:, :, :, -12:].max() == 0
    assert img[:, :, :, 12:84].float().mean() > 20


def test_images_nan_short_episodes_and_static_filter(tmp_path):
    write(tmp_path / "d", [30, 10, 25], nan_at=(2, 20))
    args = ("preprocess", "--dataset", tmp_path / "d", "--out", tmp_path / "out")
    args += ("--camera-map", "overhead=up,wrist=side", "--min-action-norm", "0")
    res = run(*args)
    assert res.exit_code == 0, res.output
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    c = meta["counts"]
    assert c["short_episodes"] == {"1": 10}
    assert c["dropped_nonfinite"] == 5  # episode 2's windows starting at 5..9 hold frame 20
    assert c["windows_kept"] == (30 - 15) + (25 - 15 - 5)
    rerun = run(*args)
    assert rerun.exit_code == 0 and "nothing to do" in rerun.stdout


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("good") / "ds"
    write(root, [20, 20])
    return root


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dataset", "{tmp}/nope"], "nope: no such dataset directory"),
        (["--dataset", "{tmp}"], "not a LeRobot dataset (no meta/info.json)"),
        (
            ["--dataset", "{good}"],
            "no feature 'observation.images.overhead' (map it with --camera-map",
        ),
        (["--dataset", "{good}", "--camera-map", "cam=up"], "names ['cam'], not spec cameras"),
        (["--dataset", "{good}", "--camera-map", "overhead"], "--camera-map expects NAME=KEY"),
        (
            [
                "--dataset",
                "{good}",
                "--camera-map",
                "overhead=up,wrist=side",
                "--min-action-norm",
                "1e9",
            ],
            "no window left after filtering (2 episodes, 10 candidate windows: 10 static",
        ),
        (["--dataset", "{good}", "--from-sigma-shards", "{tmp}"], "exactly one of --dataset"),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(tmp_path, good, args, message):
    args = [a.format(tmp=tmp_path, good=good) for a in args]
    res = run("preprocess", *args, "--out", tmp_path / "out")
    assert res.exit_code == 2, res.output
    assert message in " ".join(res.stderr.split()), res.stderr
    assert not (tmp_path / "out" / "meta.json").exists()


def test_missing_keys_and_dimension_mismatch(tmp_path):
    joint = so101_features({"up": (32, 32), "side": (32, 32)}, use_videos=False)
    no_state = {k: v for k, v in joint.items() if k != "observation.state"}
    write(tmp_path / "nostate", [20], features=no_state)
    res = run(
        "preprocess",
        "--dataset",
        tmp_path / "nostate",
        "--out",
        tmp_path / "o1",
        "--camera-map",
        "overhead=up,wrist=side",
    )
    assert res.exit_code == 2 and "no feature 'observation.state'" in res.stderr
    wide = dict(joint, action={"dtype": "float32", "shape": (7,), "names": None})
    write(tmp_path / "wide", [20], features=wide)
    res = run(
        "preprocess",
        "--dataset",
        tmp_path / "wide",
        "--out",
        tmp_path / "o2",
        "--camera-map",
        "overhead=up,wrist=side",
    )
    assert res.exit_code == 2
    assert "does not match the spec's model.dims: action_dim: data 7, spec 6" in res.stderr
    assert not (tmp_path / "o2").exists()
