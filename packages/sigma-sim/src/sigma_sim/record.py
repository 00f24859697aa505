"""Record scripted SO-101 pick-and-place episodes into a LeRobot v3 dataset.

Schema (that of ``lerobot/svla_so101_pickplace`` for state and action):

* ``observation.state`` / ``action``: float32[6] named ``shoulder_pan.pos ...
  gripper.pos``; joints in degrees, gripper 0-100 (``so101_nexus.sim_qpos_to_dataset_row``
  with the env's gripper range). The state is measured before the step, the
  action is the joint target sent at that step (already within the limits).
* ``observation.images.overhead`` / ``observation.images.wrist``: uint8
  ``(image_size, image_size, 3)``, PNG images in the parquet files or AV1 videos.
* ``observation.environment_state``: float32[8 + 4 * len(cube_colors)], the privileged
  scene state (named cube, goal disc, every cube by colour) before the step, layout in
  :func:`sigma_sim.scene.environment_state`; LeRobot's key for simulator state. Only
  training-time supervision and oracle specs read it. Datasets recorded before it
  existed resume without it.
* one task string per episode, the simulator's own, e.g. "Pick up the red cube
  and place it on the blue circle."

Episode ``k`` of a run uses attempt seeds ``SeedSequence([seed, attempt])``: the
scene, the expert's style and hence the whole episode depend only on
``(seed, attempt)``, never on earlier attempts. Failed attempts are discarded
(their frames never reach the dataset) and the next attempt index is tried, so
an interrupted run that resumes from its journal writes exactly the episodes
of an uninterrupted one.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sigma_core import SigmaUserError
from sigma_lerobot.schema import ENVIRONMENT_STATE
from sigma_sim.journal import Journal

if TYPE_CHECKING:
    import numpy as np

    from sigma_sim.config import So101PickPlaceConfig

SOURCE = "so101-pickplace"
#: The simulated arm is an SO-101 (the paper's dataset says so100_follower; same schema).
ROBOT_TYPE = "so101_follower"
#: dataset camera key -> so101_nexus observation key
CAMERAS = {
    "observation.images.overhead": "overhead_camera",
    "observation.images.wrist": "wrist_camera",
}
#: One background thread encodes the PNGs while the simulator steps: 27 s instead of
#: 40 s for the same 12 episodes on 2 cores (2 or 4 threads: 29 s, 32 s).
IMAGE_WRITER_THREADS = 1
#: The writer never decodes; naming a backend skips LeRobot's torchcodec probe, which
#: prints a long traceback on every ``resume`` when FFmpeg's shared libraries are missing.
WRITE_VIDEO_BACKEND = "pyav"
SETTLE_SECONDS = 0.5  # after the script: wait this long at most for the success flag


def features(cfg: So101PickPlaceConfig) -> dict[str, dict[str, Any]]:
    """The LeRobot feature spec of a recorded dataset (svla_so101_pickplace's schema)."""
    from sigma_lerobot.schema import so101_features

    size = (cfg.image_size, cfg.image_size)
    from sigma_sim.scene import environment_state_names

    cams = {key.removeprefix("observation.images."): size for key in CAMERAS}
    return so101_features(
        cams,
        use_videos=cfg.use_videos,
        environment_state=environment_state_names(list(cfg.cube_colors)),
    )


def attempt_seeds(seed: int, attempt: int) -> tuple[int, np.random.Generator]:
    """(env reset seed, expert random generator) of one attempt."""
    import numpy as np

    ss = np.random.SeedSequence([seed, attempt])
    env_seed = int(ss.generate_state(1, dtype=np.uint32)[0])
    return env_seed, np.random.default_rng(ss.spawn(1)[0])


@dataclass
class Attempt:
    """The outcome of one attempt: success, its task and frame count."""

    success: bool
    task: str
    frames: int


class Runner:
    """One environment and expert, reused across attempts."""

    def __init__(self, cfg: So101PickPlaceConfig) -> None:
        from sigma_sim.expert import PickPlaceExpert
        from sigma_sim.scene import make_env

        self.cfg = cfg
        self.env = make_env(cfg)
        space = self.env.action_space
        self.low, self.high = space.low.astype("float64"), space.high.astype("float64")
        self.expert = PickPlaceExpert(self.env.model, cfg.fps, self.low, self.high)
        self.gripper_limits = (float(self.low[-1]), float(self.high[-1]))

    def close(self) -> None:
        """Release the renderers (before the interpreter tears down EGL)."""
        self.env.close()

    def to_row(self, qpos: np.ndarray) -> np.ndarray:
        """Simulator radians -> dataset units (degrees, gripper 0-100), float32."""
        from so101_nexus import sim_qpos_to_dataset_row

        row = sim_qpos_to_dataset_row(
            qpos.astype("float64"), gripper_limits_rad=self.gripper_limits
        )
        return row.astype("float32")

    def run(
        self,
        seed: int,
        attempt: int,
        add_frame: Any | None = None,
        environment: bool = True,
    ) -> Attempt:
        """Run attempt ``attempt``; every frame goes to ``add_frame(frame_dict)``, with
        ``observation.environment_state`` when ``environment`` (a dataset recorded
        before that feature existed resumes without it)."""
        import numpy as np

        from sigma_sim.expert import Style
        from sigma_sim.scene import environment_state, reset_episode

        env_seed, rng = attempt_seeds(seed, attempt)
        colors = list(self.cfg.cube_colors)
        obs, info, episode = reset_episode(self.env, env_seed, colors)
        plan = self.expert.plan(episode, obs["state"], Style.sample(rng))
        limit = math.floor(self.cfg.max_seconds * self.cfg.fps)
        settle = round(SETTLE_SECONDS * self.cfg.fps)
        actions = plan.actions
        frames = 0
        for t in range(min(len(actions) + settle, limit)):
            action = np.clip(actions[min(t, len(actions) - 1)], self.low, self.high)
            if add_frame is not None:
                frame = {key: obs[cam] for key, cam in CAMERAS.items()}
                frame["observation.state"] = self.to_row(obs["state"])
                frame["action"] = self.to_row(action)
                if environment:
                    frame[ENVIRONMENT_STATE] = environment_state(self.env, colors)
                frame["task"] = episode.task
                add_frame(frame)
            obs, _, _, _, info = self.env.step(action)
            frames += 1
            if t == plan.lift_end - 1 and not info["is_grasped"]:
                break  # dropped or missed: no point in carrying on
            if t >= len(actions) - 1 and info["success"]:
                break
        return Attempt(bool(info["success"]), episode.task, frames)


def _versions() -> dict[str, str]:
    out = {}
    for dist in ("sigma-vla-sim", "so101-nexus", "lerobot", "mujoco"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "unknown"
    return out


def open_dataset(cfg: So101PickPlaceConfig, out: Path, seed: int) -> Journal:
    """Create an empty dataset at ``out`` or reopen (and repair) the one there.

    Raises:
        SigmaUserError: ``out`` holds something else, or a dataset recorded by
            another source, config or seed.
    """
    journal = Journal.load(out) if out.is_dir() else None
    if journal is None:
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise SigmaUserError(
                f"{out} exists and is not a dataset recorded by data source {SOURCE!r} "
                f"(no {Journal.path(out).relative_to(out)}); choose an empty or new folder"
            )
        return _create(cfg, out, seed)
    want = {"source": SOURCE, "seed": seed, "config": cfg.content_key()}
    have = {"source": journal.source, "seed": journal.seed, "config": journal.config}
    if want != have:
        diff = [k for k in want if want[k] != have[k]]
        if "config" in diff:
            keys = sorted(
                k
                for k in set(want["config"]) | set(have["config"])
                if want["config"].get(k) != have["config"].get(k)
            )
            diff = [d for d in diff if d != "config"] + [f"config.{k}" for k in keys]
        raise SigmaUserError(
            f"{out} holds a dataset recorded with a different {', '.join(diff)} "
            f"(recorded: {', '.join(f'{k}={_get(have, k)!r}' for k in diff)}); "
            "resume with the same settings or record into a new folder"
        )
    journal.rollback(out)
    return journal


def _get(d: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        d = d.get(part) if isinstance(d, dict) else None  # type: ignore[assignment]
    return d


def _alive(pid: str) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


def _create(cfg: So101PickPlaceConfig, out: Path, seed: int) -> Journal:
    """Create the empty dataset next to ``out`` and move it into place in one rename."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    out.parent.mkdir(parents=True, exist_ok=True)
    for stale in out.parent.glob(f".{out.name}.creating-*"):  # left by a killed run
        if not _alive(stale.name.rpartition("-")[2]):
            shutil.rmtree(stale, ignore_errors=True)
    staging = out.parent / f".{out.name}.creating-{os.getpid()}"
    try:
        ds = LeRobotDataset.create(
            repo_id=cfg.repo_id,
            fps=cfg.fps,
            features=features(cfg),
            root=staging,
            robot_type=ROBOT_TYPE,
            use_videos=cfg.use_videos,
            video_backend=WRITE_VIDEO_BACKEND,
        )
        ds.finalize()
        journal = Journal(SOURCE, cfg.content_key(), seed, versions=_versions())
        journal.snapshot(staging)
        journal.save(staging)
        os.replace(staging, out)  # an empty ``out`` folder is replaced too
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return journal


def record(
    cfg: So101PickPlaceConfig, out_dir: str | Path, episodes: int, seed: int, progress: bool
) -> dict[str, Any]:
    """Record until the dataset at ``out_dir`` holds ``episodes`` successful episodes.

    Raises:
        SigmaUserError: bad arguments, an incompatible ``out_dir``, or too many
            failed attempts (the episodes recorded so far are kept).
    """
    if episodes < 0:
        raise SigmaUserError(f"episodes must be >= 0, got {episodes}")
    if seed < 0:
        raise SigmaUserError(f"seed must be >= 0, got {seed}")
    out = Path(out_dir).expanduser().resolve()
    start = time.perf_counter()
    journal = open_dataset(cfg, out, seed)
    new_frames = 0
    if journal.episodes < episodes:
        recorder = Recorder(cfg, out, journal, episodes, progress, start)
        try:
            recorder.run()
        finally:
            recorder.close()
        new_frames = recorder.new_frames
    return summary(cfg, out, journal, time.perf_counter() - start, new_frames)


class Recorder:
    """Runs attempts and commits successful episodes in batches of ``commit_every``."""

    def __init__(
        self,
        cfg: So101PickPlaceConfig,
        out: Path,
        journal: Journal,
        episodes: int,
        progress: bool,
        start: float,
    ) -> None:
        from tqdm.auto import tqdm

        self.cfg, self.out, self.journal, self.episodes = cfg, out, journal, episodes
        self.max_attempts = max(10, math.ceil(cfg.max_attempts_factor * episodes))
        self.start = start
        self.new_frames = 0
        self.runner = Runner(cfg)
        self.bar = tqdm(
            total=episodes,
            initial=journal.episodes,
            desc=SOURCE,
            unit="ep",
            disable=not progress,
            dynamic_ncols=True,
        )

    def close(self) -> None:
        """Close the progress bar and the environment."""
        self.bar.close()
        self.runner.close()

    def run(self) -> None:
        """Commit batches until the target is met or the attempt budget is spent."""
        journal = self.journal
        while journal.episodes < self.episodes:
            if journal.attempts >= self.max_attempts:
                raise SigmaUserError(
                    f"{self.out}: only {journal.episodes} of {self.episodes} episodes "
                    f"succeeded in {journal.attempts} attempts (the dataset keeps them); "
                    "raise max_attempts_factor or lower distractors"
                )
            self.batch()

    def batch(self) -> None:
        """Record up to ``commit_every`` episodes, finalize, then commit the journal.

        An exception (or a kill) before the journal is saved leaves the batch
        uncommitted; the next run rolls the folder back to the previous commit.
        """
        from lerobot.datasets.lerobot_dataset import LeRobotDataset
        from lerobot.utils.utils import SuppressProgressBars

        journal, cfg = self.journal, self.cfg
        ds = LeRobotDataset.resume(
            cfg.repo_id,
            root=self.out,
            image_writer_threads=IMAGE_WRITER_THREADS,
            video_backend=WRITE_VIDEO_BACKEND,
        )
        saved: list[int] = []
        frames = 0
        attempt = journal.attempts
        while (
            len(saved) < cfg.commit_every
            and journal.episodes + len(saved) < self.episodes
            and attempt < self.max_attempts
        ):
            result = self.runner.run(
                journal.seed, attempt, ds.add_frame, ENVIRONMENT_STATE in ds.features
            )
            attempt += 1
            if not result.success:
                ds.clear_episode_buffer()
                continue
            with SuppressProgressBars():  # the per-episode "Map" bar of datasets
                ds.save_episode()
            saved.append(attempt - 1)
            frames += result.frames
            done = journal.episodes + len(saved)
            self.bar.update(1)
            self.bar.set_postfix(
                {
                    "attempts": attempt,
                    "yield": f"{done / attempt:.0%}",
                    "frames/s": f"{(self.new_frames + frames) / self._elapsed():.0f}",
                }
            )
        ds.finalize()
        journal.episodes += len(saved)
        journal.attempts = attempt
        journal.episode_attempts += saved
        journal.snapshot(self.out)
        journal.save(self.out)
        self.new_frames += frames

    def _elapsed(self) -> float:
        return max(time.perf_counter() - self.start, 1e-9)


def summary(
    cfg: So101PickPlaceConfig, out: Path, journal: Journal, seconds: float, new_frames: int
) -> dict[str, Any]:
    """The summary returned by the data source."""
    import json

    info = json.loads((out / "meta/info.json").read_text())
    return {
        "episodes": journal.episodes,
        "attempts": journal.attempts,
        "yield": journal.episodes / journal.attempts if journal.attempts else None,
        "frames": int(info["total_frames"]),
        "new_frames": new_frames,
        "seconds": round(seconds, 3),
        "frames_per_second": round(new_frames / seconds, 2) if seconds > 0 else None,
        "out_dir": str(out),
        "repo_id": cfg.repo_id,
        "fps": cfg.fps,
        "cameras": list(CAMERAS),
        "tasks": int(info["total_tasks"]),
    }
