"""Preprocessing, the shard format and the loader on synthetic episodes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from sigma_core.config import Dims
from sigma_core.data import (
    Episode,
    InMemorySource,
    PreprocessOptions,
    ShardDataset,
    SourceInfo,
    WindowRule,
    collate,
    cut_windows,
    make_loader,
    preprocess,
)
from sigma_core.data import prepare as prep
from sigma_core.data.stats import split_episodes
from sigma_core.errors import SigmaUserError
from sigma_core.types import SigmaBatch

CAMS = ["overhead", "wrist"]
P = 8


def episode(index: int, n: int, seed: int | None = None, static: int = 0) -> Episode:
    """A moving random-walk episode; its first ``static`` frames hold still."""
    rng = np.random.default_rng(index if seed is None else seed)
    action = np.cumsum(rng.normal(0, 1, (n, 6)), axis=0).astype(np.float32)
    action[:static] = action[0]
    state = (action + rng.normal(0, 0.1, (n, 6))).astype(np.float32)
    frames = {c: rng.integers(0, 256, (n, 3, P, P), dtype=np.uint8) for c in CAMS}
    return Episode(index, f"task {index % 2}", action, state, frames)


def source(episodes: list[Episode], action_dim: int = 6) -> InMemorySource:
    info = SourceInfo(
        kind="test",
        dataset="synthetic",
        fps=30,
        action_dim=action_dim,
        state_dim=6,
        cameras={c: f"observation.images.{c}" for c in CAMS},
        fingerprint={"episodes": [len(e.action) for e in episodes]},
    )
    return InMemorySource(episodes, info)


def options(**kw) -> PreprocessOptions:
    return PreprocessOptions(cameras=CAMS, image_size=P, horizon=16, chunk=8, **kw)


@pytest.fixture
def eps() -> list[Episode]:
    return [episode(i, 20 + 3 * i) for i in range(10)]


def test_windows_targets_and_counts():
    ep = episode(0, 40, static=20)
    win = cut_windows(ep, WindowRule(horizon=16, chunk=8, min_action_norm=0.01))
    assert win.candidates == 40 - 16 + 1
    # windows starting at 0..4 lie entirely in the static part (deltas all zero)
    assert win.dropped_static == 5 and win.start[0] == 5
    t = int(win.start[3])
    d = np.linalg.norm(np.diff(ep.action[t : t + 16], axis=0), axis=1)
    assert win.avg_action_l2[3] == pytest.approx(d.mean(), rel=1e-6)
    assert win.max_action_l2[3] == pytest.approx(d.max(), rel=1e-6)
    strided = cut_windows(ep, WindowRule(horizon=16, chunk=8, stride=4))
    assert strided.start.tolist() == list(range(0, 25, 4))


def test_nonfinite_windows_are_dropped_and_counted():
    ep = episode(0, 30)
    ep.action[20, 2] = np.nan  # in windows starting 5..14 (t <= 20 <= t + 15)
    ep.state[3, 0] = np.inf  # the observation of window 3 only
    win = cut_windows(ep, WindowRule(horizon=16, chunk=8))
    assert win.dropped_nonfinite == 11
    assert sorted(win.start.tolist()) == [0, 1, 2, 4]


def test_preprocess_layout_targets_split_and_stats(tmp_path, eps):
    meta = preprocess(source(eps), tmp_path / "out", options(shard_frames=100))
    assert meta["counts"]["windows_kept"] == sum(len(e.action) - 15 for e in eps)
    assert meta["counts"]["frames_stored"] == sum(len(e.action) for e in eps)
    assert len(meta["shards"]) > 1  # several shards, whole episodes each
    splits = {k: set(v["episodes"]) for k, v in meta["split"].items()}
    assert splits["train"] | splits["val"] | splits["test"] == set(range(10))
    assert not (splits["train"] & splits["val"] or splits["train"] & splits["test"])
    assert not splits["val"] & splits["test"] and splits["val"] and splits["test"]
    train = np.concatenate([eps[i].action for i in sorted(splits["train"])])
    np.testing.assert_allclose(meta["stats"]["action"]["mean"], train.mean(0), rtol=1e-5)
    np.testing.assert_allclose(meta["stats"]["action"]["q99"], np.quantile(train, 0.99, 0), 1e-5)
    assert meta["versions"]["sigma-vla-core"] and meta["options"]["horizon"] == 16

    ds = ShardDataset(tmp_path / "out", split="all", normalize=False, frame_history=2)
    assert len(ds) == meta["counts"]["windows_kept"]
    seen = 0
    for i in range(len(ds)):
        item = ds[i]
        ep = eps[item["episode"]]
        # find the window start from the trajectory: targets are the source actions, bit for bit
        t = int(np.flatnonzero((ep.action == item["vector"].numpy()).all(1))[0])
        assert torch.equal(item["trajectory"], torch.from_numpy(ep.action[t : t + 16]))
        assert torch.equal(item["chunk"], torch.from_numpy(ep.action[t : t + 8]))
        assert torch.equal(item["state"], torch.from_numpy(ep.state[t]))
        assert item["text"] == ep.task
        want = [ep.frames[c][[max(t - 1, 0), t]] for c in CAMS]
        assert torch.equal(item["images"], torch.from_numpy(np.stack(want)))
        seen += 1
    assert seen == len(ds)


def test_loader_batches_are_normalized_and_seeded(tmp_path, eps):
    preprocess(source(eps), tmp_path / "out", options())
    ds = ShardDataset(tmp_path / "out", split="train")
    raw = ShardDataset(tmp_path / "out", split="train", normalize=False)
    torch.testing.assert_close(ds.action_norm.denormalize(ds[0]["chunk"]), raw[0]["chunk"])
    batch = next(iter(make_loader(ds, 4, seed=1)))
    assert isinstance(batch, SigmaBatch)
    assert batch.images.shape == (4, 2, 1, 3, P, P) and batch.images.dtype == torch.float32
    assert batch.images.min() >= 0 and batch.images.max() <= 1
    assert batch.targets.trajectory.shape == (4, 16, 6) and len(batch.texts) == 4
    order = lambda seed, workers: [  # noqa: E731
        b.targets.vector for b in make_loader(ds, 8, seed=seed, num_workers=workers)
    ]
    a, b, c = order(1, 0), order(1, 2), order(2, 0)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not torch.equal(a[0], c[0])
    all_t = torch.cat([x.targets.trajectory for x in make_loader(ds, 64, shuffle=False)])
    assert all_t.mean().abs() < 0.3  # train targets normalized with train statistics


def test_shards_adopt_a_trained_policys_statistics(tmp_path, eps):
    """preprocess(stats=): a frozen base's statistics normalize new data, not the data's own."""
    own = preprocess(source(eps), tmp_path / "own", options())
    theirs = {
        "action": own["stats"]["action"] | {"mean": [1.0] * 6, "std": [2.0] * 6},
        "observation.state": own["stats"]["observation.state"] | {"mean": [-1.0] * 6},
        "observation.environment_state": {"mean": [0.0] * 20, "std": [1.0] * 20},
    }
    meta = preprocess(source(eps), tmp_path / "out", options(), stats=("runs/base", theirs))
    assert meta["stats_from"] == "runs/base"
    assert meta["stats"]["action"] == theirs["action"]
    assert meta["stats"]["observation.state"] == theirs["observation.state"]
    assert "observation.environment_state" not in meta["stats"]  # the data has none
    assert meta["split"] == own["split"]
    raw = ShardDataset(tmp_path / "out", split="train", normalize=False)[0]
    item = ShardDataset(tmp_path / "out", split="train")[0]
    torch.testing.assert_close(item["chunk"], (raw["chunk"] - 1.0) / 2.0)
    torch.testing.assert_close(item["state"], (raw["state"] + 1.0) / torch.tensor(theirs[
        "observation.state"]["std"]))  # fmt: skip
    with pytest.raises(SigmaUserError, match=r"different parameters \(stats_from"):
        preprocess(source(eps), tmp_path / "out", options())  # not resumed with other stats
    narrow = {"action": {"mean": [0.0] * 5, "std": [1.0] * 5}}
    with pytest.raises(SigmaUserError, match=r"elsewhere: statistics 'action' have width 5, this"):
        preprocess(source(eps), tmp_path / "bad", options(), stats=("elsewhere", narrow))
    assert not (tmp_path / "bad").exists()  # refused before anything was written


def test_relative_actions_are_deltas_from_the_state_in_their_own_units(tmp_path, eps):
    """data.actions: relative. meta.json holds the deltas' train statistics; the loader's
    targets are (a_{t+k} - s_t - mu_d) / sigma_d; ActionSpace.decode inverts exactly."""
    from sigma_core.data import ActionSpace
    from sigma_core.data.actions import RELATIVE_STATS

    meta = preprocess(source(eps), tmp_path / "out", options())
    raw = ShardDataset(tmp_path / "out", split="train", normalize=False)
    rel = ShardDataset(tmp_path / "out", split="train", actions="relative")
    absolute = ShardDataset(tmp_path / "out", split="train")
    deltas = torch.stack(
        [raw[i]["trajectory"] - raw[i]["state"][None, :6] for i in range(len(raw))]
    ).reshape(-1, 6)
    stats = meta["stats"][RELATIVE_STATS]
    np.testing.assert_allclose(stats["mean"], deltas.double().mean(0).numpy(), rtol=1e-6)
    np.testing.assert_allclose(stats["std"], deltas.double().std(0, unbiased=False), rtol=1e-5)
    i = 3
    mean, std = torch.tensor(stats["mean"]), torch.tensor(stats["std"])
    want = (raw[i]["trajectory"] - raw[i]["state"][None, :6] - mean) / std
    torch.testing.assert_close(rel[i]["trajectory"], want.float())
    torch.testing.assert_close(rel[i]["vector"], want[0].float())
    space = rel.action_space
    torch.testing.assert_close(space.decode(rel[i]["chunk"], rel[i]["state"]), absolute[i]["chunk"])
    batch = collate([rel[j] for j in range(4)])  # batched shapes: (B, A) and (B, K, A)
    back = batch.targets.map(lambda a: space.decode(a, batch.state))
    want_abs = collate([absolute[j] for j in range(4)]).targets
    back.zip(want_abs, lambda got, ref: torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5))
    same = ActionSpace("absolute", meta["stats"])
    assert same.encode(want, batch.state[0]) is want
    old = {k: v for k, v in meta["stats"].items() if k != RELATIVE_STATS}
    with pytest.raises(SigmaUserError, match=r"predate data.actions: relative"):
        ActionSpace("relative", old, "shards/")


def test_resume_after_failure_is_byte_identical_and_rerun_is_noop(tmp_path, eps, monkeypatch):
    whole = tmp_path / "whole"
    preprocess(source(eps), whole, options(shard_frames=60))
    real = prep.build_shard
    calls = {"n": 0}

    def crash_on_third(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(prep, "build_shard", crash_on_third)
    part = tmp_path / "part"
    with pytest.raises(KeyboardInterrupt):
        preprocess(source(eps), part, options(shard_frames=60))
    assert not (part / "meta.json").exists() and (part / ".progress.json").exists()
    with pytest.raises(SigmaUserError, match="incomplete"):
        ShardDataset(part)
    monkeypatch.setattr(prep, "build_shard", real)
    preprocess(source(eps), part, options(shard_frames=60))
    assert sorted(os.listdir(part)) == sorted(os.listdir(whole))
    for name in os.listdir(whole):
        assert (part / name).read_bytes() == (whole / name).read_bytes(), name

    mtimes = {p.name: p.stat().st_mtime_ns for p in part.iterdir()}
    again = preprocess(source(eps), part, options(shard_frames=60))
    assert again["up_to_date"] and mtimes == {p.name: p.stat().st_mtime_ns for p in part.iterdir()}
    with pytest.raises(SigmaUserError, match=r"different parameters \(options.horizon\)"):
        preprocess(source(eps), part, options(shard_frames=60).model_copy(update={"horizon": 12}))


KILL_SCRIPT = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {tests!r})
    from test_data import episode, options, source
    from sigma_core.data import preprocess
    from sigma_core.data import prepare as prep

    real = prep.build_shard
    def slow(*a, **kw):
        out = real(*a, **kw)
        time.sleep(0.4)  # time to be killed between shards
        return out
    prep.build_shard = slow
    print("start", flush=True)
    preprocess(source([episode(i, 20 + 3 * i) for i in range(10)]), sys.argv[1],
               options(shard_frames=60))
    """
)


def test_sigkill_mid_run_resumes_byte_identical(tmp_path, eps):
    script = tmp_path / "run.py"
    script.write_text(KILL_SCRIPT.format(tests=os.path.dirname(__file__)))
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, str(script), str(out)], stdout=subprocess.PIPE)
    assert proc.stdout.readline().strip() == b"start"
    progress = out / ".progress.json"
    for _ in range(600):
        if progress.exists() and len(json.loads(progress.read_text())["groups"]) >= 2:
            break
        proc.poll()
        assert proc.returncode is None
        import time

        time.sleep(0.02)
    proc.kill()
    proc.wait()
    assert not (out / "meta.json").exists()
    preprocess(source(eps), out, options(shard_frames=60))
    whole = tmp_path / "whole"
    preprocess(source(eps), whole, options(shard_frames=60))
    for name in os.listdir(whole):
        assert (out / name).read_bytes() == (whole / name).read_bytes(), name
    assert not list(out.glob(".*.tmp"))


def test_tampered_and_truncated_shards_are_refused(tmp_path, eps):
    out = tmp_path / "out"
    meta = preprocess(source(eps), out, options())
    shard = out / meta["shards"][0]["file"]
    data = bytearray(shard.read_bytes())
    data[-10] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(SigmaUserError, match="checksum mismatch"):
        ShardDataset(out)
    shard.write_bytes(bytes(data[:-100]))
    with pytest.raises(SigmaUserError, match="truncated"):
        ShardDataset(out)


def test_bad_inputs_name_the_problem(tmp_path, eps):
    with pytest.raises(SigmaUserError, match=r"model.dims: action_dim: data 7, spec 6$"):
        preprocess(source(eps, action_dim=7), tmp_path / "a", options(), dims=Dims(action_dim=6))
    short = [episode(0, 10), episode(1, 12)]
    with pytest.raises(SigmaUserError, match="2 episodes shorter than T=16"):
        preprocess(source(short), tmp_path / "b", options())
    assert not (tmp_path / "b").exists()
    still = [episode(0, 30, static=30)]
    with pytest.raises(SigmaUserError, match="15 static"):
        preprocess(source(still), tmp_path / "c", options())
    mixed = [episode(0, 10), *eps[1:]]
    meta = preprocess(source(mixed), tmp_path / "d", options())
    assert meta["counts"]["short_episodes"] == {"0": 10}
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "notes.txt").write_text("mine")
    with pytest.raises(SigmaUserError, match="not a Sigma shard directory"):
        preprocess(source(eps), tmp_path / "e", options())
    with pytest.raises(SigmaUserError, match="not a Sigma shard directory"):
        ShardDataset(tmp_path / "e")
    with pytest.raises(SigmaUserError, match="no such shard directory"):
        ShardDataset(tmp_path / "missing")


def test_split_is_by_episode_and_seeded():
    s = split_episodes(list(range(20)), 0.1, 0.2, seed=3)
    assert (len(s["train"]), len(s["val"]), len(s["test"])) == (14, 2, 4)
    assert s == split_episodes(list(range(20)), 0.1, 0.2, seed=3)
    assert s != split_episodes(list(range(20)), 0.1, 0.2, seed=4)
    assert split_episodes([5, 6], 0.1, 0.1, 0) == {"train": [5, 6], "val": [], "test": []}


def test_atomic_dir_replaces_only_when_complete(tmp_path):
    from sigma_core._fileio import atomic_dir

    target = tmp_path / "ckpt"
    with atomic_dir(target) as tmp:
        (tmp / "a").write_text("1")
    assert (target / "a").read_text() == "1"
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "a").write_text("2")
        raise RuntimeError("killed mid-write")
    assert (target / "a").read_text() == "1"  # the old directory is intact
    with atomic_dir(target) as tmp:
        (tmp / "b").write_text("3")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # no temporaries left
    assert sorted(p.name for p in target.iterdir()) == ["b"]
