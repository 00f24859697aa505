"""Closed-loop rollouts of a Sigma policy in the simulator (:mod:`sigma_sim.rollout`).

Everything runs at 32x32 pixels on CPU: three demonstrations are recorded (conftest.py) and
preprocessed once for a real meta.json, a tiny random policy is built once, and
each rollout lasts at most one simulated second (30 steps) unless it replays the
scripted expert.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch
from sim_checks import assert_first_cube

from sigma_core import SigmaUserError
from sigma_core.data import ActionSpace
from sigma_sim.config import So101PickPlaceConfig

CAMERAS = ["overhead", "wrist"]
DIMS = {"d_model": 32, "image_size": 32, "chunk_horizon": 4, "horizon": 8, "cameras": CAMERAS}


@pytest.fixture(scope="module", autouse=True)
def _offline() -> Iterator[None]:
    mp = pytest.MonkeyPatch()
    mp.setenv("HF_HUB_OFFLINE", "1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matmuls: threads only add contention with the renderer
    yield
    torch.set_num_threads(threads)
    mp.undo()


@pytest.fixture(scope="module")
def meta(tmp_path_factory: pytest.TempPathFactory, three_demos: dict[str, Any]) -> dict[str, Any]:
    """meta.json of the 3 recorded 32 px demonstrations of conftest.py, preprocessed at
    the tiny dims."""
    from sigma_core.data import PreprocessOptions, preprocess
    from sigma_lerobot.dataset import LeRobotSource

    base = tmp_path_factory.mktemp("rollout")
    opts = PreprocessOptions(
        cameras=CAMERAS, image_size=32, horizon=8, chunk=4, val_fraction=0, test_fraction=0
    )
    return preprocess(LeRobotSource(str(three_demos["path"]), CAMERAS), base / "shards", opts)


@pytest.fixture(scope="module")
def policy():
    from sigma_core import build_policy, get_registry, validate_spec

    spec = validate_spec({"model": {"dims": DIMS}}, get_registry())
    return build_policy(spec).eval()


class Recording:
    """A policy proxy that keeps every action ``step`` returned."""

    def __init__(self, policy: Any) -> None:
        self.policy = policy
        self.actions: list[torch.Tensor] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.policy, name)

    def step(self, batch: Any) -> torch.Tensor:
        action = self.policy.step(batch)
        self.actions.append(action.clone())
        return action


def _plain(result: Any) -> dict[str, Any]:
    """Result fields that do not depend on wall-clock time."""
    d = result.as_dict()
    return {k: v for k, v in d.items() if k not in ("latencies", "sim_seconds")}


# -- conversions and seeds (no simulation) ----------------------------------------


def test_action_conversion_round_trip() -> None:
    from so101_nexus import SO101_GRIPPER_LIMITS_RAD

    from sigma_sim.rollout import dataset_to_sim, sim_to_dataset

    rng = np.random.default_rng(0)
    rows = np.c_[rng.uniform(-100, 100, (50, 5)), rng.uniform(0, 100, 50)]
    for limits in (SO101_GRIPPER_LIMITS_RAD, (-0.17453, 1.7453291)):
        for row in rows:
            qpos = dataset_to_sim(row, limits)
            assert qpos.dtype == np.float64
            np.testing.assert_allclose(sim_to_dataset(qpos, limits), row, rtol=1e-5, atol=1e-4)
            np.testing.assert_allclose(qpos[:5], np.deg2rad(row[:5]))
        # gripper 0 and 100 are the ends of the jaw travel
        ends = (
            dataset_to_sim(np.array([0, 0, 0, 0, 0, 0.0]), limits)[5],
            dataset_to_sim(np.array([0, 0, 0, 0, 0, 100.0]), limits)[5],
        )
        assert ends == pytest.approx(limits)
    row = rows[0].copy()
    dataset_to_sim(row, SO101_GRIPPER_LIMITS_RAD)
    np.testing.assert_array_equal(row, rows[0])  # the input is not modified


def test_eval_seeds_are_disjoint_from_recording_seeds() -> None:
    from sigma_sim.record import attempt_seeds
    from sigma_sim.rollout import EVAL_SEED_OFFSET, eval_env_seed

    recorded = {attempt_seeds(s, a)[0] for s in range(3) for a in range(50)}
    assert max(recorded) < 2**32 <= EVAL_SEED_OFFSET
    assert eval_env_seed(0, 0) == 2**32 and eval_env_seed(10_000, 3) == 2**32 + 10_003
    with pytest.raises(SigmaUserError):
        eval_env_seed(-1, 0)


def test_summarize_reports_the_wilson_interval() -> None:
    from sigma_core.eval import wilson
    from sigma_sim.rollout import EpisodeResult, summarize

    def ep(i: int, success: bool, wrong: bool = False) -> EpisodeResult:
        return EpisodeResult(
            seed=i,
            env_seed=2**32 + i,
            task="t",
            success=success,
            steps=10,
            seconds_to_success=1.0 + i if success else None,
            wrong_object=wrong,
            reached=success or i == 1,
            grasped=success,
            lifted=success,
            min_tcp_to_obj=0.01 * (i + 1),
            min_obj_to_goal=0.1,
            latencies=[0.010] * 9 + [0.100],
            n_action_steps=5,
            sim_seconds=[0.005] * 10,
        )

    results = [ep(0, True), ep(1, False, True), ep(2, True), ep(3, False)]
    s = summarize(results)
    assert s["episodes"] == 4 and s["successes"] == 2
    assert s["success_rate"] == wilson(2, 4).as_dict()
    assert s["success_rate"]["low"] < 0.5 < s["success_rate"]["high"]
    assert s["wrong_object_rate"] == 0.25
    assert s["mean_seconds_to_success"] == pytest.approx(2.0)  # (1 + 3) / 2
    assert s["latency_ms"]["p50"] == pytest.approx(10.0)
    assert s["latency_ms"]["p99"] > 50.0
    assert results[0].replan_latencies == [0.010, 0.010]  # steps 0 and 5
    assert s["sim_step_ms"]["p50"] == pytest.approx(5.0)
    assert list(s["stages"]) == ["reached", "grasped", "lifted", "success"]
    assert s["stages"]["reached"] == wilson(3, 4).as_dict()
    assert s["stages"]["lifted"] == s["stages"]["success"] == s["success_rate"]
    assert s["mean_min_tcp_to_obj"] == pytest.approx(0.025)  # (1 + 2 + 3 + 4) cm / 4
    detail = s["episodes_detail"]
    assert [d["seed"] for d in detail] == [0, 1, 2, 3]
    assert [d["success"] for d in detail] == [True, False, True, False]
    assert detail[1]["wrong_object"] and detail[1]["reached"] and not detail[1]["grasped"]
    json.dumps(s)  # report.json material
    with pytest.raises(SigmaUserError):
        summarize([])


def test_observer_keeps_a_frame_history() -> None:
    from sigma_core.data import ObservationProcessor
    from sigma_sim.rollout import Observer

    stats = {"observation.state": {"mean": [0.0] * 6, "std": [1.0] * 6}}
    cams = {"overhead": "overhead_camera", "wrist": "wrist_camera"}
    processor = ObservationProcessor(list(cams), 16, 3, stats)
    obs = Observer(cams, processor, (-0.17, 1.74), torch.device("cpu"))

    def frame(v: int) -> dict[str, np.ndarray]:
        img = np.full((24, 32, 3), v, dtype=np.uint8)  # not square: padded like preprocessing
        return {"overhead_camera": img, "wrist_camera": img, "state": np.zeros(6, np.float32)}

    first = obs.batch(frame(10), "task")
    assert first.images.shape == (1, 2, 3, 3, 16, 16)
    assert first.images[0, 0, :, :, 8, 8].mul(255).round().eq(10).all()  # repeated at start
    assert first.images[0, 0, 0, :, 0, 8].eq(0).all()  # black padding rows on top
    second = obs.batch(frame(20), "task")
    assert second.images[0, 0, :, 0, 8, 8].mul(255).round().tolist() == [10, 10, 20]
    # gripper qpos 0 rad is (0 - low) / (high - low) * 100 in dataset units (mean 0, std 1)
    assert second.state[0, 5].item() == pytest.approx((0.0 + 0.17) / (1.74 + 0.17) * 100)


# -- closed loop --------------------------------------------------------------------


def test_rollout_fields_latencies_video_and_determinism(meta, policy, tmp_path) -> None:
    import av

    from sigma_sim.rollout import rollout

    first = Recording(policy)
    a = rollout(first, meta, 2, max_seconds=1.0, video_dir=tmp_path, video_episodes=1)
    assert [r.seed for r in a] == [10_000, 10_001]
    assert [r.env_seed for r in a] == [2**32 + 10_000, 2**32 + 10_001]
    for r in a:
        assert isinstance(r.success, bool) and isinstance(r.wrong_object, bool)
        assert r.task.startswith("Pick up the ") and r.task.endswith(" circle.")
        assert 1 <= r.steps <= 30
        assert r.success == (r.seconds_to_success is not None)
        assert r.wrong_object is False  # no distractors
        assert len(r.latencies) == len(r.sim_seconds) == r.steps
        assert all(t > 0 for t in r.latencies)
        assert r.n_action_steps == 4  # the spec's stride: H_c
        # 1 s of a random policy from the rest pose: the cube (>= 5 cm from the spawn
        # centre, on the table) is never lifted, and the closest approach is a distance
        assert not r.lifted and not r.success
        assert 0.0 < r.min_tcp_to_obj < 1.0 and 0.0 < r.min_obj_to_goal < 1.0
    assert a[0].video == tmp_path / "episode_10000.mp4" and a[1].video is None
    with av.open(str(a[0].video)) as container:
        frames = sum(1 for _ in container.decode(video=0))
    assert frames == a[0].steps + 1  # every observation, the last one too
    assert len(first.actions) == sum(r.steps for r in a)

    second = Recording(policy)
    b = rollout(second, meta, 2, max_seconds=1.0)
    assert [_plain(r) | {"video": None} for r in a] == [_plain(r) for r in b]
    torch.testing.assert_close(torch.cat(first.actions), torch.cat(second.actions))
    assert not policy.training
    other = rollout(policy, meta, 1, seed=20_000, max_seconds=0.2, n_action_steps=2)
    with pytest.raises(SigmaUserError, match=r"n_action_steps must be in \[1, 4\], got 9"):
        rollout(policy, meta, 1, n_action_steps=9)
    assert other[0].steps == 6 and other[0].n_action_steps == 2
    assert len(other[0].replan_latencies) == 3


def test_an_oracle_policy_reads_the_scene_state(meta, policy) -> None:
    """A spec with dims.environment_state_dim gets observation.environment_state in closed
    loop, normalized with the shards' statistics; other policies get none."""
    from sigma_core import build_policy, get_registry, validate_spec
    from sigma_sim.rollout import rollout

    width = len(meta["stats"]["observation.environment_state"]["mean"])
    dims = DIMS | {"environment_state_dim": width}
    spec = validate_spec({"model": {"dims": dims}}, get_registry())
    oracle = Seen(build_policy(spec).eval())
    rollout(oracle, meta, 1, max_seconds=0.2)
    first = oracle.batches[0].environment_state
    assert first is not None and first.shape == (1, width)
    assert_first_cube(meta, first)
    plain = Seen(policy)
    rollout(plain, meta, 1, max_seconds=0.1)
    assert plain.batches[0].environment_state is None


class Seen(Recording):
    """A policy proxy that keeps every batch ``step`` was given."""

    def __init__(self, policy: Any) -> None:
        super().__init__(policy)
        self.batches: list[Any] = []

    def step(self, batch: Any) -> torch.Tensor:
        self.batches.append(batch)
        return super().step(batch)


def test_rollout_with_distractors(meta, policy) -> None:
    from sigma_sim.rollout import rollout, summarize

    results = rollout(policy, meta, 2, distractors=1, max_seconds=0.5)
    assert all(isinstance(r.wrong_object, bool) for r in results)
    assert all(isinstance(r.success, bool) for r in results)
    summary = summarize(results)
    assert summary["episodes"] == 2 and 0.0 <= summary["wrong_object_rate"] <= 1.0
    assert summary["success_rate"]["n"] == 2
    assert summary["latency_ms"]["p50"] > 0 and summary["latency_ms"]["p99"] > 0


def test_the_instruction_once_variant_shows_the_task_on_the_first_k_steps(
    meta, policy, tmp_path
) -> None:
    from sigma_sim.rollout import rollout

    seen = Seen(policy)
    (result,) = rollout(seen, meta, 1, distractors=1, max_seconds=0.4, instruction_steps=5)
    texts = [b.texts[0] for b in seen.batches]
    assert len(texts) == 12 and result.task  # 0.4 s at 30 fps
    assert texts == [result.task] * 5 + [""] * 7
    assert all(torch.isfinite(a).all() for a in seen.actions)  # "" is a valid instruction
    always = Seen(policy)
    rollout(always, meta, 1, distractors=1, max_seconds=0.4)
    assert {b.texts[0] for b in always.batches} == {result.task}
    journal = tmp_path / "policy.jsonl"  # the variant is a setting: not read back as the plain run
    rollout(policy, meta, 1, max_seconds=0.2, journal=journal)
    rollout(policy, meta, 1, max_seconds=0.2, journal=journal, instruction_steps=2)
    assert len(journal.read_text().splitlines()) == 2
    with pytest.raises(SigmaUserError, match="instruction_steps must be >= 0"):
        rollout(policy, meta, 1, instruction_steps=-1)


def test_wrong_object_detects_a_moved_distractor() -> None:
    import mujoco

    from sigma_sim.rollout import Distractors, eval_env_seed
    from sigma_sim.scene import make_env, reset_episode

    cfg = So101PickPlaceConfig(image_size=16, distractors=2)
    env = make_env(cfg)
    try:
        reset_episode(env, eval_env_seed(0, 0), list(cfg.cube_colors))
        watch = Distractors(env, list(cfg.cube_colors))
        assert len(watch.bodies) == 2 and not watch.disturbed()
        body = watch.bodies[1]
        adr = env.model.jnt_qposadr[env.model.body_jntadr[body]]  # its free joint
        env.data.qpos[adr + 2] += 0.015  # lifted 1.5 cm: under 2 cm, still counts
        mujoco.mj_kinematics(env.model, env.data)
        assert watch.disturbed()
        env.data.qpos[adr + 2] -= 0.015
        env.data.qpos[adr] += 0.015  # pushed 1.5 cm: fine
        mujoco.mj_kinematics(env.model, env.data)
        assert not watch.disturbed()
        env.data.qpos[adr] += 0.01  # 2.5 cm
        mujoco.mj_kinematics(env.model, env.data)
        assert watch.disturbed()
    finally:
        env.close()


class ExpertReplay(torch.nn.Module):
    """Plays back the scripted expert's joint targets, normalized as a trained policy's
    actions are: closed-loop success then depends only on rollout's conversions."""

    def __init__(self, spec: Any, plan: np.ndarray, meta: dict[str, Any], limits: Any) -> None:
        from sigma_core.data import Normalizer
        from sigma_sim.rollout import sim_to_dataset

        super().__init__()
        self.spec = spec
        self.weight = torch.nn.Parameter(torch.zeros(1))
        norm = Normalizer(meta["stats"]["action"])
        rows = np.stack([sim_to_dataset(q, limits) for q in plan])
        self.targets = norm.normalize(torch.from_numpy(rows))
        self.state_norm = Normalizer(meta["stats"]["observation.state"])
        self.space = ActionSpace(spec.data.actions, meta["stats"])
        self.t, self.n = 0, spec.run_stride()

    @property
    def dims(self) -> Any:
        return self.spec.model.dims

    def reset(self, n_action_steps: int | None = None) -> None:
        self.t, self.n = 0, n_action_steps or self.spec.run_stride()

    def step(self, batch: Any) -> torch.Tensor:
        assert batch.images.shape == (1, 2, 1, 3, 32, 32) and batch.texts[0].startswith("Pick")
        assert batch.images.min() >= 0.0 and batch.images.max() <= 1.0
        if self.t % self.n == 0:  # a plan: relative actions are relative to its state
            self.anchor = batch.state
        action = self.targets[min(self.t, len(self.targets) - 1)][None]
        self.t += 1
        return self.space.encode(action, self.anchor)


@pytest.mark.parametrize("actions", ["absolute", "relative"])
def test_expert_actions_through_rollout_succeed(meta, policy, actions) -> None:
    """Dataset-unit actions -> sim joint targets is the right conversion: the expert's
    own plan, sent through it, completes the task in closed loop; as deltas from the
    state of each plan (data.actions: relative) too."""
    from sigma_sim.expert import PickPlaceExpert, Style
    from sigma_sim.rollout import eval_env_seed, rollout
    from sigma_sim.scene import make_env, reset_episode

    cfg = So101PickPlaceConfig(image_size=32)
    env = make_env(cfg)
    try:
        low, high = env.action_space.low.astype(float), env.action_space.high.astype(float)
        expert = PickPlaceExpert(env.model, cfg.fps, low, high)
        obs, _, episode = reset_episode(env, eval_env_seed(0, 0), list(cfg.cube_colors))
        plan = np.clip(expert.plan(episode, obs["state"], Style()).actions, low, high)
    finally:
        env.close()
    spec = policy.spec.model_copy(
        update={"data": policy.spec.data.model_copy(update={"actions": actions})}
    )
    replay = ExpertReplay(spec, plan, meta, (float(low[-1]), float(high[-1])))
    [result] = rollout(replay, meta, 1, seed=0, max_seconds=len(plan) / cfg.fps + 1.0)
    assert result.task == episode.task
    assert result.success, f"expert replay failed after {result.steps} steps"
    assert result.reached and result.grasped and result.lifted  # every stage on the way
    assert result.min_tcp_to_obj <= 0.02 and result.min_obj_to_goal <= 0.025
    assert result.seconds_to_success == pytest.approx(result.steps / cfg.fps)
    assert result.steps <= len(plan) + cfg.fps


def test_rollout_checks_meta_against_the_policy(meta, policy) -> None:
    from sigma_sim.rollout import rollout

    wrong_size = {**meta, "options": {**meta["options"], "image_size": 64}}
    with pytest.raises(SigmaUserError, match="image_size"):
        rollout(policy, wrong_size, 1)
    real = {**meta, "source": {**meta["source"], "cameras": {"overhead": "observation.images.up"}}}
    with pytest.raises(SigmaUserError, match="does not render"):
        rollout(policy, real, 1)
    with pytest.raises(SigmaUserError, match="n_action_steps"):
        rollout(policy, meta, 1, n_action_steps=99)


def test_the_closed_loop_rebuilds_the_recorded_scene(meta, policy, capsys) -> None:
    """preprocess copies the recorder's settings into meta.json; the rollout uses them
    (here edited to one cube and one disc colour: the task text must name them)."""
    from sigma_sim.rollout import rollout, scene_config

    recorded = meta["source"]["recording"]
    assert recorded["source"] == "so101-pickplace"
    assert recorded["config"]["cube_colors"] == So101PickPlaceConfig().cube_colors
    cfg = scene_config(meta, distractors=None, image_size=32, fps=30)
    assert cfg.model_dump(exclude={"image_size"}) == So101PickPlaceConfig(
        **recorded["config"]
    ).model_dump(exclude={"image_size"})
    assert cfg.clear_distractors  # distractors added to a one-cube recording keep clear
    legacy = {**recorded["config"], "distractors": 2}
    legacy.pop("clear_distractors", None)
    old = {**meta, "source": {**meta["source"], "recording": {**recorded, "config": legacy}}}
    # recorded with distractors before the option: the overlapping layout it was recorded in
    assert not scene_config(old, distractors=None, image_size=32, fps=30).clear_distractors
    legacy["clear_distractors"] = True
    assert scene_config(old, distractors=None, image_size=32, fps=30).clear_distractors
    narrow = {"cube_colors": ["green"], "target_colors": ["purple"], "spawn_max_radius": 0.1}
    edited = {
        **meta,
        "source": {
            **meta["source"],
            "recording": {**recorded, "config": {**recorded["config"], **narrow}},
        },
    }
    [result] = rollout(policy, edited, 1, max_seconds=0.1)
    assert result.task == "Pick up the green cube and place it on the purple circle."
    assert scene_config(edited, distractors=None, image_size=32, fps=30).spawn_max_radius == 0.1
    with pytest.raises(SigmaUserError, match="distractors=1 needs at least 2 cube_colors"):
        scene_config(edited, distractors=1, image_size=32, fps=30)
    bare = {**meta, "source": {k: v for k, v in meta["source"].items() if k != "recording"}}
    default = scene_config(bare, distractors=2, image_size=32, fps=30)
    assert default.distractors == 2 and default.cube_colors == So101PickPlaceConfig().cube_colors
    assert "records no so101-pickplace recording settings" in capsys.readouterr().err


# -- rendering only what is read, workers, the journal ------------------------------


def test_frame_is_read_marks_the_frames_of_replanning_batches() -> None:
    from sigma_sim.rollout import frame_is_read

    def read(n: int, frames: int, steps: int = 12) -> list[int]:
        return [t for t in range(steps) if frame_is_read(t, n, frames)]

    assert read(4, 1) == [0, 4, 8]  # the replanning steps
    assert read(4, 2) == [0, 3, 4, 7, 8, 11]  # and the step before each
    assert read(3, 3) == read(1, 1) == list(range(12))  # F >= n: every frame
    for n, frames in ((4, 2), (3, 2), (5, 3)):  # brute force over the replanning windows
        want = {s for r in range(0, 40 + n, n) for s in range(r - frames + 1, r + 1) if 0 <= s < 40}
        assert read(n, frames, 40) == sorted(want)


class ReplanImages(Recording):
    """Also keeps the images of every batch of a replanning step (``t % n == 0``)."""

    def __init__(self, policy: Any, n: int) -> None:
        super().__init__(policy)
        self.n, self.t, self.images = n, 0, []

    def reset(self, n_action_steps: int | None = None) -> None:
        self.t = 0
        self.policy.reset(n_action_steps)

    def step(self, batch: Any) -> torch.Tensor:
        if self.t % self.n == 0:
            self.images.append(batch.images.clone())
        self.t += 1
        return super().step(batch)


def test_rendering_only_read_frames_changes_nothing_the_policy_sees(meta, monkeypatch) -> None:
    """F = 2 and replanning every 3 steps: one frame in three is never rendered, and the
    images at every replanning step, the actions and the outcomes are bit-identical."""
    from sigma_core import build_policy, get_registry, validate_spec
    from sigma_sim import scene
    from sigma_sim.rollout import rollout

    skipped: list[int] = []
    monkeypatch.setattr(scene._NoRenderer, "render", lambda self: skipped.append(1))

    dims = {**DIMS, "frame_history": 2}
    spec = validate_spec({"model": {"dims": dims}}, get_registry())
    torch.manual_seed(0)
    policy = build_policy(spec).eval()
    runs = {}
    for every in (True, False):
        proxy = ReplanImages(policy, 3)
        results = rollout(
            proxy, meta, 2, max_seconds=0.7, n_action_steps=3, render_every_step=every
        )
        runs[every] = (proxy, results)
        steps = sum(r.steps for r in results)
        # the frames after steps 1, 4, 7, ... (t % 3 == 1) are read by no batch: 2 cameras each
        assert len(skipped) == (0 if every else 2 * sum(-(-(r.steps - 1) // 3) for r in results))
        skipped.clear()
        assert steps > 6
    (ref, ref_results), (new, new_results) = runs[True], runs[False]
    assert len(ref.images) == len(new.images) == sum(-(-r.steps // 3) for r in ref_results)
    assert ref.images[0].shape == (1, 2, 2, 3, 32, 32)
    for a, b in zip(ref.images, new.images, strict=True):
        assert torch.equal(a, b)
    assert torch.equal(torch.cat(ref.actions), torch.cat(new.actions))
    assert [_plain(r) for r in ref_results] == [_plain(r) for r in new_results]


def test_workers_give_the_sequential_results_in_seed_order(meta, policy) -> None:
    from sigma_sim.rollout import rollout

    every = rollout(policy, meta, 3, max_seconds=0.5, render_every_step=True)
    replan = rollout(policy, meta, 3, max_seconds=0.5)
    parallel = rollout(policy, meta, 3, max_seconds=0.5, workers=2)
    assert [r.seed for r in parallel] == [10_000, 10_001, 10_002]
    assert (
        [_plain(r) for r in every] == [_plain(r) for r in replan] == [_plain(r) for r in parallel]
    )
    assert not policy.training
    with pytest.raises(SigmaUserError, match="workers"):
        rollout(policy, meta, 1, workers=0)


def test_a_journal_resumes_without_rerunning_finished_episodes(
    meta, policy, tmp_path, monkeypatch
) -> None:
    from sigma_sim import rollout as module

    ran: list[int] = []
    episode = module._Runner.episode

    def counted(self: Any, i: int) -> Any:
        ran.append(i)
        return episode(self, i)

    monkeypatch.setattr(module._Runner, "episode", counted)
    journal = tmp_path / "eval.closed-loop" / "policy.jsonl"
    first = module.rollout(policy, meta, 2, max_seconds=0.3, journal=journal)
    assert ran == [0, 1] and len(journal.read_text().splitlines()) == 2
    with journal.open("a") as f:
        f.write('{"format": 1, "policy": "cut sh')  # a kill in the middle of a write
    ran.clear()
    resumed = module.rollout(policy, meta, 4, max_seconds=0.3, journal=journal)
    assert ran == [2, 3]  # the first two were read back, timings included
    assert [r.as_dict() for r in resumed[:2]] == [r.as_dict() for r in first]
    lines = journal.read_text().splitlines()
    assert len(lines) == 4 and [json.loads(x)["seed"] for x in lines] == [
        10_000 + i for i in range(4)
    ]
    straight = module.rollout(policy, meta, 4, max_seconds=0.3)
    assert [_plain(r) for r in resumed] == [_plain(r) for r in straight]
    ran.clear()
    again = module.rollout(policy, meta, 4, max_seconds=0.3, journal=journal)
    assert ran == [] and [r.as_dict() for r in again] == [r.as_dict() for r in resumed]
    ran.clear()
    module.rollout(policy, meta, 1, max_seconds=0.2, journal=journal)  # other settings
    assert ran == [0] and len(journal.read_text().splitlines()) == 5


def test_a_bad_journal_line_names_the_file(meta, policy, tmp_path) -> None:
    from sigma_sim.rollout import rollout

    journal = tmp_path / "policy.jsonl"
    journal.write_text('{"format": 1, "seed": 10000}\n')
    with pytest.raises(SigmaUserError, match=rf"{journal}, line 1: unreadable closed-loop"):
        rollout(policy, meta, 1, max_seconds=0.1, journal=journal)
    journal.write_text("not json\n\n")
    with pytest.raises(SigmaUserError, match="line 1"):
        rollout(policy, meta, 1, max_seconds=0.1, journal=journal)


FORKED_WORKERS = """
import json, pickle, sys
import torch
torch.set_num_threads(1)
from sigma_sim import scene
from sigma_sim.rollout import rollout
policy = pickle.load(open(sys.argv[1], "rb"))
meta = json.load(open(sys.argv[2]))
results = rollout(policy, meta, 3, max_seconds=0.5, workers=2)
assert not scene.has_rendered()  # the episodes ran in forked workers
print(json.dumps([r.as_dict() for r in results]))
"""


def test_workers_fork_in_a_process_that_has_not_rendered(meta, policy, tmp_path) -> None:
    """``sigma eval``'s path: no simulator in the parent yet, so the workers are forked."""
    import pickle
    import subprocess
    import sys

    from sigma_sim.rollout import rollout

    (tmp_path / "policy.pkl").write_bytes(pickle.dumps(policy))
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    run = subprocess.run(
        [sys.executable, "-c", FORKED_WORKERS, tmp_path / "policy.pkl", tmp_path / "meta.json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    forked = json.loads(run.stdout.strip().splitlines()[-1])
    here = rollout(policy, meta, 3, max_seconds=0.5)
    drop = ("latencies", "sim_seconds")
    assert [{k: v for k, v in d.items() if k not in drop} for d in forked] == [
        _plain(r) for r in here
    ]


def test_the_closed_loop_normalises_with_the_policys_saved_statistics() -> None:
    from types import SimpleNamespace

    from sigma_sim.rollout import deployment_stats

    saved = {"observation.state": {"mean": [1.0], "std": [2.0]}}
    data = {"stats": {"observation.state": {"mean": [0.0], "std": [1.0]}}}
    assert deployment_stats(SimpleNamespace(stats=saved), data) is saved
    assert deployment_stats(SimpleNamespace(stats=None), data) is data["stats"]  # older policy
    with pytest.raises(SigmaUserError, match="no saved normalisation statistics"):
        deployment_stats(SimpleNamespace(stats=None), {})
