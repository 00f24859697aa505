"""Closed-loop evaluation of a Sigma policy in the SO-101 pick-and-place simulator.

:func:`rollout` runs a trained :class:`~sigma_core.model.policy.SigmaPolicy` in
the same scene the ``so101-pickplace`` data source records demonstrations in
(:func:`sigma_sim.scene.make_env` / :func:`sigma_sim.scene.reset_episode`), and
:func:`summarize` reduces the per-episode :class:`EpisodeResult` list to the
numbers worth reporting.

One control step (``fps`` of the shard directory's source, one ``env.step``)::

    render overhead + wrist          (so101_nexus, HWC uint8, render_size px)
    -> sigma_core.data.ObservationProcessor, the one preprocessing and LeRobot use:
       (3, P, P) uint8 resized with pad, a history of F frames (the first frame
       repeated at the episode start), images float in [0, 1],
       state = normalize(sim_qpos_to_dataset_row(qpos)) with the policy's saved stats
    -> policy.step(SigmaBatch)       (B = 1, timed with time.perf_counter)
    -> denormalize -> dataset units (degrees, gripper 0-100)
    -> dataset_row_to_sim_qpos -> clip to the action space -> env.step (pd_joint_pos)

The episode ends at the first step whose ``info["success"]`` is true, or after
``floor(max_seconds * fps)`` steps.

Rendering only what the policy reads
------------------------------------
A policy plans on replanning steps (``t % n_action_steps == 0``) and pops a
queued action on the others without looking at the observation. Rendering the
two cameras was almost all of a control step's cost, so the simulator renders a
step's frame only when a replanning batch will contain it
(:func:`frame_is_read`: the replanning step itself and, with a frame history of
F > 1, the F - 1 steps before it), and on every step of the episodes that get a
video. :class:`sigma_sim.scene.CameraSwitch` turns the env's renderers off in
between without touching physics or random draws, so every image a policy sees
is bit-identical to the every-step rendering (``render_every_step=True``, kept
as the benchmark's reference), and so is every outcome. On the other steps the
batch carries the last read images as a stand-in: a policy-shaped object that
reads observations on every step must be run with ``render_every_step=True``.

Workers and the journal
-----------------------
``workers > 1`` runs episodes in spawned processes, each with its own simulator
and a pickled copy of the policy (one torch thread each); episodes are seeded
by index, so results do not depend on the worker count and come back in seed
order. With ``journal``, every finished episode is appended to a JSONL file
(:mod:`sigma_sim.episode_journal`), keyed by the policy's
:func:`policy_fingerprint`, the seed and the outcome-deciding settings; a rerun
reads those episodes back and runs only the rest.

Evaluation seeds
----------------
Episode ``i`` of ``rollout(..., seed=s)`` resets the simulator with
``env_seed = EVAL_SEED_OFFSET + s + i`` (:func:`eval_env_seed`), where
``EVAL_SEED_OFFSET = 2**32``. The recorder's reset seeds
(:func:`sigma_sim.record.attempt_seeds`) are ``uint32`` draws of
``SeedSequence([seed, attempt])``, i.e. always below ``2**32``, so no
evaluation scene can be one that any recorded dataset (whatever its seed) was
recorded in. The default ``seed=10_000`` additionally keeps the evaluation's own
torch noise seeds away from the small seeds used elsewhere. The policy's
sampling noise (the flow trajectory branch draws ``torch.randn``) is seeded per
episode from ``env_seed`` inside ``torch.random.fork_rng``, so a rollout is
reproducible and leaves the caller's global RNG untouched.

The instruction shown once
--------------------------
With ``instruction_steps=k`` the policy reads the episode's instruction on the first
``k`` control steps only; from step ``k`` on its batch carries the empty text ``""``.
A policy that carries the intent in its memory can keep going for the named cube; one
without memory cannot know which cube was asked for once distractors are on the table.
:attr:`EpisodeResult.task` stays the instruction the episode was built for.

Wrong object
------------
With distractors, :attr:`EpisodeResult.wrong_object` is true when, at any
control step, some distractor cube (a cube the instruction did not name) is
more than :data:`WRONG_OBJECT_DISPLACEMENT` (2 cm, 3-D distance of its centre)
from where it was after the reset, or more than :data:`WRONG_OBJECT_LIFT`
(1 cm) above its reset height. Checking every step catches a cube that was
picked up and put back; pushing a distractor (with the arm or the named cube)
by more than 2 cm counts too. Without distractors it is always false.

Progress stages
---------------
Success is all or nothing; to see how far a policy gets, every episode also
records, from the simulator's ``info`` at every control step:

* ``reached``: the tool centre point came within :data:`REACH_DISTANCE` (2 cm)
  of the named cube's centre (``info["tcp_to_obj_dist"]``);
* ``grasped``: the simulator reported the named cube grasped (``info["is_grasped"]``);
* ``lifted``: the named cube rose :data:`LIFT_HEIGHT` (2 cm) above its rest
  height (``info["lift_height"]``);
* ``min_tcp_to_obj`` / ``min_obj_to_goal``: the closest the tool came to the
  cube and the cube to the goal disc's centre (m), continuous measures that
  paired comparisons over the same seeds can resolve when success rates cannot.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sigma_core import SigmaUserError
from sigma_core.data import ActionSpace, ObservationProcessor
from sigma_core.eval import CLOSED_LOOP_EPISODE_FIELDS, STAGES
from sigma_sim.render import ensure_gl_backend

if TYPE_CHECKING:
    from collections.abc import Callable

    import numpy as np
    import torch
    from so101_nexus.mujoco.pick_and_place import PickAndPlaceEnv

    from sigma_core import SigmaPolicy
    from sigma_sim.config import So101PickPlaceConfig
    from sigma_sim.scene import CameraSwitch

ensure_gl_backend()  # before anything imports mujoco

#: Added to ``seed + i``: evaluation reset seeds are >= 2**32, recording ones < 2**32.
EVAL_SEED_OFFSET = 2**32
#: A distractor whose centre moved farther than this (m) from its reset position...
WRONG_OBJECT_DISPLACEMENT = 0.02
#: ...or rose more than this (m) above its reset height was disturbed.
WRONG_OBJECT_LIFT = 0.01
#: The tool centre point within this distance (m) of the named cube's centre: reached.
REACH_DISTANCE = 0.02
#: The named cube this far (m) above its rest height: lifted.
LIFT_HEIGHT = 0.02
#: Control rate when meta.json does not record the source's fps.
DEFAULT_FPS = 30
#: so101_nexus observation key of each simulator camera (see :data:`sigma_sim.record.CAMERAS`).
SIM_CAMERAS = {"overhead": "overhead_camera", "wrist": "wrist_camera"}
#: Video codecs tried in order when writing episode videos with PyAV.
VIDEO_CODECS = ("libx264", "libopenh264", "h264", "mpeg4")


@dataclass
class EpisodeResult:
    """The outcome of one closed-loop episode.

    Attributes:
        seed: the episode's evaluation seed, ``seed + i``.
        env_seed: the simulator reset seed, ``EVAL_SEED_OFFSET + seed + i``.
        task: the instruction given to the policy (the simulator's task text).
        success: ``info["success"]`` at the last step (the cube rests on the goal
            disc, released).
        steps: control steps executed (``env.step`` calls).
        seconds_to_success: simulated time ``steps / fps`` when success was first
            reported, else ``None``.
        wrong_object: a distractor cube was moved or lifted (see the module docstring).
        distractors: distractor cubes on the table in this episode.
        reached / grasped / lifted: progress stages reached at some step (see the
            module docstring).
        min_tcp_to_obj / min_obj_to_goal: closest approach (m) of the tool to the
            cube and of the cube to the goal disc.
        latencies: wall seconds of every ``policy.step`` call, one per step.
        n_action_steps: actions executed per plan; step ``t`` replanned (ran the
            model) iff ``t % n_action_steps == 0``.
        sim_seconds: wall seconds of every ``env.step`` (physics, plus rendering both
            cameras on the steps whose frame is read; see the module docstring).
        video: the mp4 written for this episode, if any.
    """

    seed: int
    env_seed: int
    task: str
    success: bool
    steps: int
    seconds_to_success: float | None
    wrong_object: bool
    distractors: int = 0
    reached: bool = False
    grasped: bool = False
    lifted: bool = False
    min_tcp_to_obj: float = math.inf
    min_obj_to_goal: float = math.inf
    latencies: list[float] = field(default_factory=list)
    n_action_steps: int = 1
    sim_seconds: list[float] = field(default_factory=list)
    video: Path | None = None

    @property
    def replan_latencies(self) -> list[float]:
        """Latencies of the steps that ran the model (the others pop a queued action)."""
        return self.latencies[:: self.n_action_steps]

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly fields (``video`` as a string)."""
        out = asdict(self)
        out["video"] = None if self.video is None else str(self.video)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EpisodeResult:
        """The inverse of :meth:`as_dict`.

        Raises:
            TypeError: unknown or missing fields.
        """
        fields = dict(data)
        if fields.get("video") is not None:
            fields["video"] = Path(fields["video"])
        return cls(**fields)


def eval_env_seed(seed: int, episode: int) -> int:
    """Simulator reset seed of evaluation episode ``episode`` (see the module docstring)."""
    if seed < 0 or episode < 0:
        raise SigmaUserError(f"evaluation seeds must be >= 0, got seed={seed}, episode={episode}")
    return EVAL_SEED_OFFSET + seed + episode


def dataset_to_sim(row: np.ndarray, gripper_limits: tuple[float, float]) -> np.ndarray:
    """Dataset units (joints in degrees, gripper 0-100) -> simulator joint radians (float64).

    The inverse of what the recorder stores (``so101_nexus.sim_qpos_to_dataset_row``
    with the env's gripper control range): ``so101_nexus.dataset_row_to_sim_qpos``.
    """
    import numpy as np
    from so101_nexus import dataset_row_to_sim_qpos

    return np.asarray(
        dataset_row_to_sim_qpos(
            np.array(row, dtype=np.float64, copy=True), gripper_limits_rad=gripper_limits
        ),
        dtype=np.float64,
    )


def sim_to_dataset(qpos: np.ndarray, gripper_limits: tuple[float, float]) -> np.ndarray:
    """Simulator joint radians -> dataset units (float32), as the recorder stores them."""
    import numpy as np
    from so101_nexus import sim_qpos_to_dataset_row

    row = sim_qpos_to_dataset_row(
        np.array(qpos, dtype=np.float64, copy=True), gripper_limits_rad=gripper_limits
    )
    return np.asarray(row, dtype=np.float32)


def sim_cameras(meta: dict[str, Any], cameras: list[str]) -> dict[str, str]:
    """Spec camera name -> so101_nexus observation key, through meta.json's source cameras.

    The source maps each spec camera to a dataset key (``observation.images.<sim
    camera>`` for datasets recorded here); a camera with no mapping is taken by
    its own name.

    Raises:
        SigmaUserError: a camera the simulator does not render.
    """
    source = meta.get("source", {}).get("cameras") or {}
    out = {}
    for cam in cameras:
        name = str(source.get(cam, cam)).removeprefix("observation.images.")
        if name not in SIM_CAMERAS:
            raise SigmaUserError(
                f"camera {cam!r} comes from dataset key {source.get(cam, cam)!r}, which the "
                f"simulator does not render (it has {', '.join(SIM_CAMERAS)})"
            )
        out[cam] = SIM_CAMERAS[name]
    return out


def scene_config(
    meta: dict[str, Any], *, distractors: int | None, image_size: int, fps: int
) -> So101PickPlaceConfig:
    """The scene the shards' demonstrations were recorded in, for the closed loop.

    ``meta["source"]["recording"]["config"]`` (copied by ``sigma preprocess`` from
    the dataset's ``meta/sigma_sim.json``) gives the cube and disc colours, the
    spawn region and the distractor count, so a policy is evaluated on the task
    it was trained for; ``image_size``, ``fps`` and (when not ``None``)
    ``distractors`` override it. Shards without a recording (another dataset)
    get the default scene, with a message.

    Raises:
        SigmaUserError: settings the simulator refuses (e.g. more distractors than
            the recording has other cube colours).
    """
    from sigma_sim.config import So101PickPlaceConfig
    from sigma_sim.record import SOURCE

    recording = (meta.get("source") or {}).get("recording") or {}
    settings: dict[str, Any] = {}
    if recording.get("source") == SOURCE and isinstance(recording.get("config"), dict):
        known = set(So101PickPlaceConfig.model_fields)
        settings = {k: v for k, v in recording["config"].items() if k in known}
        if settings.get("distractors") and "clear_distractors" not in settings:
            # recorded with distractors before the option: the overlapping layout it
            # was recorded in (a one-cube recording has no layout to keep)
            settings["clear_distractors"] = False
    else:
        print(
            "sigma_sim.rollout: meta.json records no so101-pickplace recording settings; "
            "evaluating in the default scene",
            file=sys.stderr,
        )
    settings |= {"image_size": image_size, "fps": fps}
    if distractors is not None:
        settings["distractors"] = distractors
    try:  # the recorder's max_seconds is unused here
        return So101PickPlaceConfig(**settings)
    except ValueError as exc:
        raise SigmaUserError(f"bad simulator settings: {exc}") from None


def control_fps(meta: dict[str, Any]) -> int:
    """The control rate of the shards' recording (``meta.json``'s ``source.fps``; default
    :data:`DEFAULT_FPS`)."""
    fps = meta.get("source", {}).get("fps")
    return round(float(fps)) if fps else DEFAULT_FPS


class Observer:
    """Turns simulator observations into :class:`SigmaBatch` es through the policy's
    :class:`sigma_core.data.ObservationProcessor` (resize with pad, frame history,
    normalisation with the statistics the policy was trained with).

    Args:
        cameras: spec camera -> simulator observation key (:func:`sim_cameras`).
        processor: the policy's observation processor (its cameras are the keys of
            ``cameras``).
        gripper_limits: the simulator gripper's (low, high) radians, for dataset units.
        device: where the batches go.
    """

    def __init__(
        self,
        cameras: dict[str, str],
        processor: ObservationProcessor,
        gripper_limits: tuple[float, float],
        device: torch.device,
    ) -> None:
        self.cameras, self.processor = cameras, processor
        self.gripper_limits, self.device = gripper_limits, device
        self.last_images: torch.Tensor | None = None
        self.last_environment: torch.Tensor | None = None

    def reset(self) -> None:
        self.processor.reset()
        self.last_images = self.last_environment = None

    def images(self, obs: dict[str, np.ndarray]) -> torch.Tensor:
        """(C, 3, P, P) uint8: every camera resized with padding, as preprocessing does."""
        return self.processor.images({c: obs[key] for c, key in self.cameras.items()})

    def batch(
        self,
        obs: dict[str, np.ndarray],
        task: str,
        environment: np.ndarray | None = None,
        read: bool = True,
    ) -> Any:
        """The batch of this step; ``read=False`` on steps whose images the policy ignores.

        ``environment`` is :func:`sigma_sim.scene.environment_state` (needed on read
        steps when the policy reads it, else ignored; like the images, the last read
        one stands in on the other steps).

        A camera image may be ``None`` (not rendered, see
        :class:`sigma_sim.scene.CameraSwitch`); such a frame keeps its place in the
        history. With ``read=False`` the images of the last read batch stand in
        (the policy pops a queued action and does not look at them); with
        ``read=True`` every frame of the history must have been rendered.

        Raises:
            RuntimeError: ``read=True`` while a frame of the history was not rendered.
        """
        import torch

        from sigma_core import SigmaBatch

        rendered = all(obs.get(key) is not None for key in self.cameras.values())
        history = self.processor.history
        history.push(self.images(obs) if rendered else None)
        scene = self.processor.normalize.environment
        if read or self.last_images is None:
            self.last_images = history.window()[None].to(self.device).float().div_(255)
            if scene is not None:  # read with the images, kept with them
                if environment is None:
                    raise ValueError("this policy reads the environment state; pass it")
                env = scene.normalize(torch.from_numpy(environment))
                self.last_environment = env[None].to(self.device)
        state = torch.from_numpy(sim_to_dataset(obs["state"], self.gripper_limits))
        return SigmaBatch(
            images=self.last_images,
            state=self.processor.normalize(state)[None].to(self.device),
            texts=[task],
            environment_state=self.last_environment,
        )


class _Video:
    """An mp4 of one camera written with PyAV; ``None`` when PyAV cannot write one."""

    def __init__(self, path: Path, fps: int) -> None:
        import av

        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.container = av.open(str(path), mode="w")
        self.stream = None
        for codec in VIDEO_CODECS:
            try:
                self.stream = self.container.add_stream(codec, rate=fps)
                break
            except Exception:  # codec not built into this FFmpeg
                continue
        if self.stream is None:
            self.container.close()
            raise RuntimeError(f"PyAV has none of the codecs {', '.join(VIDEO_CODECS)}")
        self.stream.pix_fmt = "yuv420p"
        self.started = False

    def add(self, hwc: np.ndarray) -> None:
        import av
        import numpy as np

        h, w = hwc.shape[:2]
        frame = np.pad(hwc, ((0, h % 2), (0, w % 2), (0, 0)))  # yuv420p needs even sides
        if not self.started:
            self.stream.height, self.stream.width = frame.shape[:2]
            self.started = True
        video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        for packet in self.stream.encode(video_frame):
            self.container.mux(packet)

    def close(self) -> None:
        if self.started:
            for packet in self.stream.encode():
                self.container.mux(packet)
        self.container.close()


def _open_video(path: Path, fps: int) -> _Video | None:
    try:
        import av  # noqa: F401  (PyAV comes with LeRobot)
    except ImportError:
        print(f"sigma_sim.rollout: PyAV (av) is not installed; not writing {path}", file=sys.stderr)
        return None
    try:
        return _Video(path, fps)
    except Exception as exc:
        print(
            f"sigma_sim.rollout: cannot write {path} ({type(exc).__name__}: {exc}); skipping",
            file=sys.stderr,
        )
        return None


class Distractors:
    """Reset positions of the active distractor cubes and the wrong-object test."""

    def __init__(self, env: PickAndPlaceEnv, colors: list[str]) -> None:
        import mujoco

        from sigma_sim.scene import active_distractors

        self.env = env
        active = set(active_distractors(env, colors))
        self.bodies = [
            mujoco.mj_name2id(env.model, mujoco.mjtObj.mjOBJ_BODY, f"distractor_slot_{i}")
            for i, color in enumerate(colors)
            if color in active
        ]
        self.start = env.data.xpos[self.bodies].copy()

    def disturbed(self) -> bool:
        import numpy as np

        if not self.bodies:
            return False
        now = self.env.data.xpos[self.bodies]
        moved = np.linalg.norm(now - self.start, axis=1) > WRONG_OBJECT_DISPLACEMENT
        lifted = now[:, 2] - self.start[:, 2] > WRONG_OBJECT_LIFT
        return bool((moved | lifted).any())


def frame_is_read(t: int, n_action_steps: int, frames: int) -> bool:
    """Whether the observation of control step ``t`` enters a batch the policy reads.

    Step ``r`` replans iff ``r % n_action_steps == 0`` and reads the frames of steps
    ``r - frames + 1 .. r``; so frame ``t`` is read iff the next replanning step at
    or after ``t`` is less than ``frames`` steps away: ``(-t) % n_action_steps < frames``.
    """
    return (-t) % n_action_steps < frames


def policy_fingerprint(policy: Any) -> str:
    """SHA-256 of a policy's class and ``state_dict`` (names, dtypes, shapes, bytes)."""
    import hashlib

    import torch

    h = hashlib.sha256(f"{type(policy).__module__}.{type(policy).__qualname__}".encode())
    for name, value in policy.state_dict().items():
        h.update(f"{name}:{value.dtype}:{tuple(value.shape)}".encode())
        flat = value.detach().to("cpu").contiguous().reshape(-1)
        h.update(flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b"")
    return h.hexdigest()


@dataclass
class _Plan:
    """What every episode of one rollout shares besides the policy (picklable, for workers)."""

    cfg: So101PickPlaceConfig
    cameras: dict[str, str]
    size: int
    frames: int
    fps: int
    limit: int
    n_steps: int
    seed: int
    stats: dict[str, Any]
    actions: str
    environment_state_dim: int
    video_dir: Path | None
    video_episodes: int
    render_every_step: bool
    instruction_steps: int | None = None

    def action_space(self) -> ActionSpace:
        """The action space (with the action and state normalizers) of the policy's stats."""
        return ActionSpace(self.actions, self.stats)  # type: ignore[arg-type]

    def processor(self) -> ObservationProcessor:
        """The policy's observation processor (resize with pad, history, normalisation).

        Raises:
            SigmaUserError: statistics that lack what the policy's spec reads.
        """
        from sigma_core.data import ObservationProcessor

        return ObservationProcessor(
            list(self.cameras), self.size, self.frames, self.stats, self.environment_state_dim
        )

    def settings(self) -> dict[str, Any]:
        """Everything here that decides an episode's outcome (the journal's key)."""
        from importlib.metadata import version

        return {
            "scene": self.cfg.model_dump(mode="json"),
            "cameras": self.cameras,
            "image_size": self.size,
            "frame_history": self.frames,
            "fps": self.fps,
            "steps": self.limit,
            "n_action_steps": self.n_steps,
            "stats": self.stats,
            "actions": self.actions,
            "environment_state_dim": self.environment_state_dim,
            **(
                {}
                if self.instruction_steps is None
                else {"instruction_steps": self.instruction_steps}
            ),
            "versions": {p: version(p) for p in ("so101-nexus", "mujoco")},
        }


class _Runner:
    """One simulator and one policy; runs episodes of a :class:`_Plan` by index."""

    def __init__(
        self,
        policy: SigmaPolicy,
        plan: _Plan,
        on_plan: Callable[..., None] | None = None,
        uncluttered: bool = False,
    ) -> None:
        import numpy as np

        from sigma_sim.scene import CameraSwitch, make_env

        self.policy, self.plan, self.on_plan = policy, plan, on_plan
        self.uncluttered = uncluttered
        self.device = next(policy.parameters()).device
        self.env = make_env(plan.cfg)
        self.switch = CameraSwitch(self.env)
        low = self.env.action_space.low.astype(np.float64)
        high = self.env.action_space.high.astype(np.float64)
        self.bounds = (low, high, (float(low[-1]), float(high[-1])))
        self.space = plan.action_space()
        self.observer = Observer(plan.cameras, plan.processor(), self.bounds[2], self.device)

    def episode(self, i: int) -> EpisodeResult:
        import torch

        plan = self.plan
        env_seed = eval_env_seed(plan.seed, i)
        video = None
        if plan.video_dir is not None and i < plan.video_episodes:
            video = _open_video(Path(plan.video_dir) / f"episode_{plan.seed + i}.mp4", plan.fps)
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(env_seed)
            return _episode(
                self.env,
                self.policy,
                self.observer,
                self.space,
                list(plan.cfg.cube_colors),
                env_seed,
                plan.limit,
                plan.fps,
                plan.n_steps,
                self.bounds,
                video,
                self.switch,
                plan.render_every_step or video is not None,
                plan.instruction_steps,
                self.on_plan,
                self.uncluttered,
            )

    def close(self) -> None:
        self.switch.close()


_WORKER: _Runner | None = None


def _start_worker(policy: SigmaPolicy | bytes, plan: _Plan) -> None:
    """Process-pool initializer: one torch thread, the policy (unpickled), a simulator built."""
    import pickle

    import torch

    global _WORKER
    torch.set_num_threads(1)
    if isinstance(policy, bytes):
        policy = pickle.loads(policy)
    policy.eval()
    _WORKER = _Runner(policy, plan)


def _worker_episode(i: int) -> EpisodeResult:
    assert _WORKER is not None, "worker not started"
    return _WORKER.episode(i)


def deployment_stats(policy: SigmaPolicy, meta: dict[str, Any]) -> dict[str, Any]:
    """The normalisation statistics to run ``policy`` with: the ones saved in it (since
    sigma-vla saves them with every policy), else the data's meta.json (older policies).

    Raises:
        SigmaUserError: neither has them.
    """
    saved = getattr(policy, "stats", None)
    if saved:
        return saved
    if meta.get("stats"):
        return meta["stats"]
    raise SigmaUserError(
        "closed loop: the policy has no saved normalisation statistics (saved before "
        "sigma-vla kept them) and the data's meta.json has none; pass the meta.json of "
        "the shards it was trained on"
    )


def rollout(
    policy: SigmaPolicy,
    meta: dict[str, Any],
    episodes: int,
    *,
    seed: int = 10_000,
    distractors: int | None = None,
    max_seconds: float = 15.0,
    n_action_steps: int | None = None,
    video_dir: Path | None = None,
    video_episodes: int = 3,
    render_size: int | None = None,
    progress: bool = False,
    workers: int = 1,
    journal: Path | None = None,
    render_every_step: bool = False,
    instruction_steps: int | None = None,
    on_plan: Callable[..., None] | None = None,
    uncluttered: bool = False,
) -> list[EpisodeResult]:
    """Run ``policy`` closed-loop in the SO-101 pick-and-place simulator.

    Args:
        policy: a :class:`SigmaPolicy` (put in eval mode for the rollout, its
            previous mode restored afterwards), on any device.
        meta: the content of the training shard directory's ``meta.json``: its
            ``stats`` normalize the state and de-normalize the actions when the
            policy has none saved (:func:`deployment_stats`), its
            ``options`` give the cameras and image size, ``source.fps`` the
            control rate (default 30) and ``source.cameras`` which simulator
            camera each spec camera is.
        episodes: how many episodes to run.
        seed: evaluation seed; episode ``i`` uses ``seed + i`` (reset seed
            ``2**32 + seed + i``, disjoint from every recording; see the module docstring).
        distractors: extra cubes of other colours on the table (0-4); default the
            recording's (see :func:`scene_config`).
        max_seconds: simulated seconds before an episode counts as failed.
        n_action_steps: actions executed from each plan before replanning
            (default: the spec's replanning stride, see ``SigmaPolicy.reset``).
        video_dir: write ``episode_<seed>.mp4`` of the overhead camera here for
            the first ``video_episodes`` episodes (skipped, with a message, when
            PyAV is missing or has no H.264/MPEG-4 encoder).
        video_episodes: how many episodes get a video.
        render_size: camera resolution of the simulator (default the shards'
            ``options.image_size``); set it to the recording's resolution when
            that was larger than the stored size, so frames are downscaled the
            way preprocessing downscaled them.
        progress: show a progress bar over episodes.
        workers: processes that run episodes in parallel (each builds its own
            simulator and gets a pickled copy of ``policy``, one torch thread
            each); 1 runs them in this process. Results do not depend on it.
        journal: a JSONL file that records each finished episode (see
            :mod:`sigma_sim.episode_journal`); episodes already in it for this
            policy, seed and settings are read back instead of run again.
        render_every_step: render both cameras on every step, as before the
            cameras were switched off between the frames the policy reads
            (the reference of ``benchmarks/closed_loop_speed.py``). Results do not
            depend on it.
        instruction_steps: show the instruction on the first ``k`` control steps
            only, then the empty text (see the module docstring); ``None``: always.
        on_plan: called with the batch of every planning step (the one the policy
            plans its chunk from), in order, episode after episode. Its
            ``environment_state`` holds the normalized scene truth even when the policy
            estimates its scene state (which it then does not read): what
            ``sigma_sim.dagger`` records. In-process only (``workers`` 1, no
            ``journal``).
        uncluttered: call ``on_plan(batch, clean)`` instead, ``clean`` (1, C, 1, 3, P, P)
            the cameras of the same instant rendered without the distractor cubes
            (:func:`sigma_sim.scene.uncluttered_observation`), processed as the policy's
            images are: what ``sigma_sim.declutter`` records. Needs ``on_plan``.

    Returns:
        One :class:`EpisodeResult` per episode, in order.

    Raises:
        SigmaUserError: bad arguments, or ``meta`` that does not match the
            policy's dims (action/state width, cameras, image size), or an
            unreadable journal line.
    """
    from tqdm.auto import tqdm

    from sigma_core.data import check_dims, shard_dims
    from sigma_sim.episode_journal import EpisodeJournal

    if episodes < 0:
        raise SigmaUserError(f"episodes must be >= 0, got {episodes}")
    if max_seconds <= 0:
        raise SigmaUserError(f"max_seconds must be > 0, got {max_seconds}")
    if workers < 1:
        raise SigmaUserError(f"workers must be >= 1, got {workers}")
    check_instruction_steps(instruction_steps)
    if on_plan is not None and (workers != 1 or journal is not None):
        raise SigmaUserError("on_plan records in this process: workers must be 1, no journal")
    if uncluttered and on_plan is None:
        raise SigmaUserError("uncluttered renders for on_plan: pass on_plan")
    eval_env_seed(seed, 0)  # rejects a negative seed before the scene is built
    have = shard_dims(meta)
    dims = policy.dims
    check_dims(
        dims,
        {k: have[k] for k in ("action_dim", "state_dim", "cameras", "image_size")},
        "meta.json",
    )
    fps = control_fps(meta)
    size = int(have["image_size"])
    n_steps = n_action_steps or policy.spec.run_stride()
    try:  # validates n_action_steps before the scene is built
        policy.reset(n_steps)
    except ValueError as exc:
        raise SigmaUserError(f"closed loop: {exc}") from exc
    plan = _Plan(
        cfg=scene_config(meta, distractors=distractors, image_size=render_size or size, fps=fps),
        cameras=sim_cameras(meta, list(dims.cameras)),
        size=size,
        frames=dims.frame_history,
        fps=fps,
        limit=max(1, math.floor(max_seconds * fps + 1e-9)),
        n_steps=n_steps,
        seed=seed,
        stats=deployment_stats(policy, meta),
        actions=policy.spec.data.actions,
        environment_state_dim=(
            policy.spec.model.observed_scene_state_dim
            if on_plan is None
            else policy.dims.environment_state_dim  # the truth, recorded for on_plan
        ),
        video_dir=None if video_dir is None else Path(video_dir),
        video_episodes=video_episodes,
        render_every_step=render_every_step,
        instruction_steps=instruction_steps,
    )
    plan.action_space(), plan.processor()  # refuse statistics before a simulator starts
    book = None
    done: dict[int, EpisodeResult] = {}
    if journal is not None:
        device = next(policy.parameters()).device.type  # CPU and GPU numerics differ
        settings = plan.settings() | {"device": device}
        book = EpisodeJournal(Path(journal), policy_fingerprint(policy), settings)
        wanted = {seed + i for i in range(episodes)}
        done = {s: r for s, r in book.load(EpisodeResult.from_dict).items() if s in wanted}
        if done:
            print(
                f"sigma_sim.rollout: {len(done)} of {episodes} episodes read back from {journal}",
                file=sys.stderr,
            )
    todo = [i for i in range(episodes) if seed + i not in done]
    bar = tqdm(total=episodes, initial=len(done), desc="rollout", unit="ep", disable=not progress)

    def finished(result: EpisodeResult) -> None:
        done[result.seed] = result
        if book is not None:
            book.append(result.seed, result.as_dict())
        bar.update(1)

    was_training = policy.training
    policy.eval()
    try:
        if todo and min(workers, len(todo)) == 1:
            runner = _Runner(policy, plan, on_plan, uncluttered)
            try:
                for i in todo:
                    finished(runner.episode(i))
            finally:
                runner.close()
        elif todo:
            _run_in_workers(policy, plan, todo, min(workers, len(todo)), finished)
    finally:
        bar.close()
        policy.train(was_training)
    return [done[seed + i] for i in range(episodes)]


def check_instruction_steps(instruction_steps: int | None) -> None:
    """Refuse a negative ``instruction_steps`` (``None``: the instruction always shown).

    Raises:
        SigmaUserError: naming the value.
    """
    if instruction_steps is not None and instruction_steps < 0:
        raise SigmaUserError(f"instruction_steps must be >= 0, got {instruction_steps}")


def shown_task(task: str, step: int, instruction_steps: int | None) -> str:
    """The text a policy reads at control step ``step`` (0-based): the instruction on the
    first ``instruction_steps`` steps, ``""`` after them (the instruction-once variant)."""
    return task if instruction_steps is None or step < instruction_steps else ""


def _run_in_workers(
    policy: SigmaPolicy,
    plan: _Plan,
    todo: list[int],
    workers: int,
    finished: Callable[[EpisodeResult], None],
) -> None:
    """Run episodes ``todo`` in ``workers`` processes; ``finished`` as each ends.

    A CPU policy in a process that has not rendered yet (``sigma eval``) goes to
    forked workers, which start in about a second. Otherwise workers fork from a
    clean server process (``forkserver``) that imports this module and the
    policy's modules once (torch, transformers and peft: ~15 s on a loaded 2-core
    machine) and get the policy pickled: a worker forked from a process that had
    rendered hung in its first render (:func:`sigma_sim.scene.has_rendered`), and
    CUDA does not survive a fork. Where neither exists, spawn.
    """
    import multiprocessing
    import pickle
    import sys
    import warnings
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    import torch

    from sigma_sim.scene import has_rendered

    methods = multiprocessing.get_all_start_methods()
    cpu = next(policy.parameters()).device.type == "cpu" and not torch.cuda.is_initialized()
    sent: SigmaPolicy | bytes = policy
    if sys.platform == "linux" and "fork" in methods and cpu and not has_rendered():
        context = multiprocessing.get_context("fork")
    elif "forkserver" in methods:
        context = multiprocessing.get_context("forkserver")
        modules = {"sigma_sim.rollout"} | {type(m).__module__ for m in policy.modules()}
        context.set_forkserver_preload(sorted(modules))  # no effect once the server runs
        sent = pickle.dumps(policy)
    else:
        context, sent = multiprocessing.get_context("spawn"), pickle.dumps(policy)
    pool = ProcessPoolExecutor(
        workers,
        mp_context=context,
        initializer=_start_worker,
        initargs=(sent, plan),
    )
    with pool:
        with warnings.catch_warnings():  # the workers start on the first submit
            # Python 3.12 warns on fork() with threads (torch's); a worker runs one
            warnings.filterwarnings("ignore", message=".*fork.*", category=DeprecationWarning)
            pending = {pool.submit(_worker_episode, i) for i in todo}
        try:
            while pending:
                ready, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in ready:
                    finished(future.result())
        except BaseException:
            for future in pending:
                future.cancel()
            raise


class Progress:
    """Running extremes of the simulator's ``info`` over an episode (the progress stages)."""

    def __init__(self) -> None:
        self.min_tcp_to_obj = math.inf
        self.min_obj_to_goal = math.inf
        self.max_lift = -math.inf
        self.grasped = False

    def update(self, info: dict[str, Any]) -> None:
        self.min_tcp_to_obj = min(self.min_tcp_to_obj, float(info["tcp_to_obj_dist"]))
        self.min_obj_to_goal = min(self.min_obj_to_goal, float(info["obj_to_target_dist"]))
        self.max_lift = max(self.max_lift, float(info["lift_height"]))
        self.grasped = self.grasped or float(info["is_grasped"]) >= 0.5


def _episode(
    env: PickAndPlaceEnv,
    policy: SigmaPolicy,
    observer: Observer,
    space: ActionSpace,
    colors: list[str],
    env_seed: int,
    limit: int,
    fps: int,
    n_steps: int,
    bounds: tuple[np.ndarray, np.ndarray, tuple[float, float]],
    video: _Video | None,
    switch: CameraSwitch | None = None,
    render_every_step: bool = True,
    instruction_steps: int | None = None,
    on_plan: Callable[..., None] | None = None,
    uncluttered: bool = False,
) -> EpisodeResult:
    import numpy as np

    from sigma_sim.scene import environment_state, reset_episode

    low, high, gripper = bounds
    if switch is not None:
        switch.set(True)  # step 0 replans
    obs, info, episode = reset_episode(env, env_seed, colors)
    distractors = Distractors(env, colors)
    policy.reset(n_steps)
    observer.reset()
    latencies: list[float] = []
    sim_seconds: list[float] = []
    wrong = False
    success = False
    seconds_to_success = None
    steps = 0
    progress = Progress()
    progress.update(info)
    try:
        for _ in range(limit):
            if video is not None:
                video.add(obs["overhead_camera"])
            replan = steps % n_steps == 0
            read = render_every_step or replan
            scene = None
            if read and observer.processor.normalize.environment is not None:
                scene = environment_state(env, colors)
            text = shown_task(episode.task, steps, instruction_steps)
            batch = observer.batch(obs, text, scene, read=read)
            if replan:  # the plan is relative to this state
                anchor = batch.state
                if on_plan is not None and uncluttered:
                    from sigma_sim.scene import uncluttered_observation

                    clean = observer.images(uncluttered_observation(env))
                    on_plan(batch, clean[None, :, None].to(batch.images).div_(255))
                elif on_plan is not None:
                    on_plan(batch)
            if switch is not None:
                switch.set(
                    render_every_step
                    or frame_is_read(steps + 1, n_steps, observer.processor.history.frames)
                )
            t0 = time.perf_counter()
            action = space.decode(policy.step(batch), anchor)
            latencies.append(time.perf_counter() - t0)
            row = space.action.denormalize(action[0].float().cpu()).numpy()
            target = np.clip(dataset_to_sim(row, gripper), low, high)
            t1 = time.perf_counter()
            obs, _, _, _, info = env.step(target)
            sim_seconds.append(time.perf_counter() - t1)
            steps += 1
            wrong = wrong or distractors.disturbed()
            progress.update(info)
            if info["success"]:
                success = True
                seconds_to_success = steps / fps
                break
        if video is not None:
            video.add(obs["overhead_camera"])
    finally:
        if video is not None:
            video.close()
    return EpisodeResult(
        seed=env_seed - EVAL_SEED_OFFSET,
        env_seed=env_seed,
        task=episode.task,
        success=success,
        steps=steps,
        seconds_to_success=seconds_to_success,
        wrong_object=wrong,
        distractors=len(distractors.bodies),
        reached=progress.min_tcp_to_obj <= REACH_DISTANCE,
        grasped=progress.grasped,
        lifted=progress.max_lift >= LIFT_HEIGHT,
        min_tcp_to_obj=progress.min_tcp_to_obj,
        min_obj_to_goal=progress.min_obj_to_goal,
        latencies=latencies,
        n_action_steps=n_steps,
        sim_seconds=sim_seconds,
        video=None if video is None else video.path,
    )


def _percentiles_ms(values: list[float]) -> dict[str, float | None]:
    import numpy as np

    if not values:
        return {"p50": None, "p99": None, "mean": None, "max": None}
    ms = np.asarray(values, dtype=np.float64) * 1000.0
    return {
        "p50": float(np.percentile(ms, 50)),
        "p99": float(np.percentile(ms, 99)),
        "mean": float(ms.mean()),
        "max": float(ms.max()),
    }


#: Per-episode fields of :func:`summarize`'s ``episodes_detail`` (paired comparisons use them).
EPISODE_FIELDS = CLOSED_LOOP_EPISODE_FIELDS


def summarize(results: list[EpisodeResult], level: float = 0.95) -> dict[str, Any]:
    """Aggregate episode results.

    Returns:
        ``{"episodes", "successes", "success_rate": {estimate, low, high, level, n}``
        (Wilson score interval, :func:`sigma_core.eval.wilson`), ``"stages"``
        (``{stage: Wilson interval}`` for reached / grasped / lifted / success),
        ``"wrong_object_rate"``, ``"distractors"`` (the most distractor cubes any
        episode had), ``"mean_seconds_to_success"`` (over successful
        episodes; ``None`` without any), ``"mean_min_tcp_to_obj"``,
        ``"mean_min_obj_to_goal"`` (m), ``"steps"`` (total), ``"latency_ms"``
        (p50 / p99 / mean / max over every control step, replanning steps
        included), ``"replan_latency_ms"`` (the same over the steps that ran the
        model), ``"sim_step_ms"`` (``env.step``: physics, and rendering where a
        frame is read) and ``"episodes_detail"`` (one dict of :data:`EPISODE_FIELDS` per episode,
        in seed order: two policies run on the same seeds are paired by it).

    Raises:
        SigmaUserError: no results.
    """
    import numpy as np

    from sigma_core.eval import wilson

    n = len(results)
    if n == 0:
        raise SigmaUserError("summarize needs at least one episode result")
    successes = sum(r.success for r in results)
    times = [r.seconds_to_success for r in results if r.seconds_to_success is not None]
    return {
        "episodes": n,
        "successes": successes,
        "success_rate": wilson(successes, n, level).as_dict(),
        "stages": {
            stage: wilson(sum(bool(getattr(r, stage)) for r in results), n, level).as_dict()
            for stage in STAGES
        },
        "wrong_object_rate": sum(r.wrong_object for r in results) / n,
        "distractors": max(r.distractors for r in results),
        "mean_seconds_to_success": sum(times) / len(times) if times else None,
        "mean_min_tcp_to_obj": float(np.mean([r.min_tcp_to_obj for r in results])),
        "mean_min_obj_to_goal": float(np.mean([r.min_obj_to_goal for r in results])),
        "steps": sum(r.steps for r in results),
        "latency_ms": _percentiles_ms([x for r in results for x in r.latencies]),
        "replan_latency_ms": _percentiles_ms([x for r in results for x in r.replan_latencies]),
        "sim_step_ms": _percentiles_ms([x for r in results for x in r.sim_seconds]),
        "episodes_detail": [{k: getattr(r, k) for k in EPISODE_FIELDS} for r in results],
    }


__all__ = [
    "EPISODE_FIELDS",
    "EVAL_SEED_OFFSET",
    "LIFT_HEIGHT",
    "REACH_DISTANCE",
    "STAGES",
    "WRONG_OBJECT_DISPLACEMENT",
    "WRONG_OBJECT_LIFT",
    "EpisodeResult",
    "dataset_to_sim",
    "eval_env_seed",
    "frame_is_read",
    "policy_fingerprint",
    "rollout",
    "scene_config",
    "sim_cameras",
    "sim_to_dataset",
    "summarize",
]
