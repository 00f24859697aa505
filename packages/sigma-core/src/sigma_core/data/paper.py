"""Import the Sigma paper's published shards (``shard_0000x.pt``) into Sigma's shard format.

Each ``.pt`` file holds windows with the fields ``vision_inputs``,
``robot_state``, ``gt_action_vector``, ``gt_action_chunk``,
``gt_action_trajectory``, ``avg_action_l2``, ``max_action_l2`` and ``text``,
either as a list of per-window dicts or as one dict of per-field lists/stacked
tensors. Files are read with ``torch.load(weights_only=True)``: a file that
needs arbitrary unpickling is refused, never executed.

``vision_inputs`` per window may be ``(3, H, W)`` (one camera), ``(C, 3, H, W)``,
``(C, F, 3, H, W)`` (the last frame is kept) or a dict camera -> image; uint8,
float in [0, 1], or float in [-1, 1] (SigLIP-normalized) are recognised by
range. The paper's targets and ``avg_action_l2`` are kept exactly.

The paper's own layout (§4.1) stores per window the *screen sequence* of the
window (``pick_rgb_from_example``): ``vision_inputs`` ``(T, 3, H, W)`` with ``T``
the window length, and ``robot_state`` ``(T, S)``. A leading dimension equal to
the window length and to ``robot_state``'s is read as the frames of one camera;
the window's first frame and first state are its observation. The chunk length
is taken from ``gt_action_chunk`` unless ``--chunk`` says otherwise.
:func:`interpretation` describes what was read, and ``meta.json`` records it
under ``source.interpretation``.

Episodes: the shards carry no episode id (an ``episode_index`` field is used
when present), so consecutive windows of one file are grouped into one
pseudo-episode while each window's trajectory continues the previous one (the
overlap of a sliding window, ``traj_{i+1}[:-s] == traj_i[s:]`` for some shift
``s``). The train/val/test split is then by pseudo-episode, so overlapping
windows never straddle splits.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sigma_core._fileio import sha256_file
from sigma_core.data.episodes import SourceInfo
from sigma_core.data.images import resize_with_pad
from sigma_core.data.prepare import PreprocessOptions, Progress, write_shards
from sigma_core.data.shards import concat_columns, shard_columns
from sigma_core.data.windows import action_l2
from sigma_core.errors import SigmaUserError

FIELDS = (
    "vision_inputs",
    "robot_state",
    "gt_action_vector",
    "gt_action_chunk",
    "gt_action_trajectory",
)
TEXT_FIELDS = ("text", "task", "instruction", "language_instruction")
_EPISODE_STRIDE = 1_000_000  # pseudo-episode id = file number * stride + run number


def load_pt(path: Path) -> list[dict[str, Any]]:
    """Windows of one paper shard as a list of dicts (``weights_only=True``)."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise SigmaUserError(
            f"{path}: refused: loading it needs unsafe unpickling, which Sigma never does "
            f"(torch.load weights_only=True said: {str(e).splitlines()[0][:200]}). Re-save it "
            "with tensors, numbers, strings, lists and dicts only."
        ) from None
    except Exception as e:
        raise SigmaUserError(f"{path}: not a readable torch file ({e})") from None
    if isinstance(obj, dict) and "samples" in obj:
        obj = obj["samples"]
    if isinstance(obj, dict):
        n = {len(v) for k, v in obj.items() if k in FIELDS}
        if len(n) != 1:
            raise SigmaUserError(f"{path}: fields have different lengths {sorted(n)}")
        obj = [{k: v[i] for k, v in obj.items()} for i in range(n.pop())]
    if not isinstance(obj, list) or not all(isinstance(s, dict) for s in obj):
        raise SigmaUserError(f"{path}: expected a list of window dicts or a dict of fields")
    return obj


def is_sequence(sample: dict[str, Any], horizon: int) -> bool:
    """Whether a window holds the paper's sequences: ``vision_inputs`` (T, 3, H, W) frames
    of one camera and ``robot_state`` (T, S), T the window length."""
    vision, state = sample.get("vision_inputs"), sample.get("robot_state")
    if isinstance(vision, dict) or vision is None or state is None:
        return False
    v, st = torch.as_tensor(vision), torch.as_tensor(state)
    return v.ndim == 4 and st.ndim == 2 and v.shape[0] == st.shape[0] == horizon


def interpretation(sample: dict[str, Any], opts: PreprocessOptions) -> dict[str, str]:
    """How the fields of windows shaped like ``sample`` are read (recorded in meta.json)."""
    chunk = len(torch.as_tensor(sample["gt_action_chunk"]))
    if is_sequence(sample, opts.horizon):
        vision = f"(T={opts.horizon}, 3, H, W): frames of one camera; the first is the observation"
        state = f"(T={opts.horizon}, S): the state sequence; the first is the observation's"
    else:
        vision = "(C, 3, H, W) cameras (or (3, H, W), (C, F, 3, H, W), a dict of cameras)"
        state = "(S,): the observation's state"
    return {
        "vision_inputs": vision,
        "robot_state": state,
        "gt_action_chunk": f"(H_c={chunk}, A): the chunk target, kept exactly",
    }


def _first_window(directory: str | Path, field: str) -> dict[str, Any]:
    """The first window of the first ``.pt`` file in ``directory``, which must have ``field``."""
    files = sorted(Path(directory).glob("*.pt"))
    if not files:
        raise SigmaUserError(f"{directory}: no .pt shard files")
    first = load_pt(files[0])
    if not first or field not in first[0]:
        raise SigmaUserError(f"{files[0]} window 0: missing field(s) {field}")
    return first[0]


def data_chunk(directory: str | Path) -> int:
    """The chunk length H_c of the paper's shards in ``directory`` (first window's)."""
    return len(torch.as_tensor(_first_window(directory, "gt_action_chunk")["gt_action_chunk"]))


def data_cameras(directory: str | Path, horizon: int) -> int:
    """How many cameras the paper's shards in ``directory`` hold (first window's
    ``vision_inputs``: a dict's entries, one for a frame sequence or a single image,
    else its leading dimension)."""
    window = _first_window(directory, "vision_inputs")
    x = window["vision_inputs"]
    if isinstance(x, dict):
        return len(x)
    if is_sequence(window, horizon) or torch.as_tensor(x).ndim == 3:
        return 1
    return int(torch.as_tensor(x).shape[0])


def _images(x: Any, cams: int, size: int, where: str, sequence: bool = False) -> np.ndarray:
    if isinstance(x, dict):
        x = torch.stack([torch.as_tensor(v) for v in x.values()])
    x = torch.as_tensor(x)
    if sequence:
        if cams != 1:
            raise SigmaUserError(
                f"{where}: vision_inputs is one camera's frame sequence {tuple(x.shape)}, the"
                f" spec has {cams} cameras; use a spec with one camera (model.dims.cameras)"
            )
        x = x[:1]  # the window's first frame: its observation
    if x.ndim == 3:
        x = x[None]
    if x.ndim == 5:
        x = x[:, -1]
    if x.ndim != 4 or x.shape[1] != 3:
        raise SigmaUserError(f"{where}: vision_inputs has shape {tuple(x.shape)}, not (C, 3, H, W)")
    if x.shape[0] != cams:
        raise SigmaUserError(f"{where}: vision_inputs has {x.shape[0]} cameras, the spec {cams}")
    if x.dtype != torch.uint8:
        x = x.float()
        if x.min() < 0:
            x = (x + 1) / 2
        if x.max() <= 1.0 + 1e-6:
            x = x * 255
        x = x.round().clamp(0, 255).to(torch.uint8)
    return resize_with_pad(x, size).numpy()


def _text(sample: dict[str, Any], where: str) -> str:
    for k in TEXT_FIELDS:
        if k in sample:
            t = sample[k]
            return t if isinstance(t, str) else str(t[0] if isinstance(t, list | tuple) else t)
    raise SigmaUserError(f"{where}: no task text field (one of {', '.join(TEXT_FIELDS)})")


def _continues(prev: np.ndarray, cur: np.ndarray) -> bool:
    t = len(cur)
    return any(np.array_equal(cur[: t - s], prev[s:]) for s in range(1, t))


class PaperShards:
    """The paper's ``.pt`` shards in a directory, converted one file per Sigma shard."""

    def __init__(
        self, directory: str | Path, opts: PreprocessOptions, action_dim: int, state_dim: int
    ) -> None:
        self.dir = Path(directory)
        if not self.dir.is_dir():
            raise SigmaUserError(f"{self.dir}: no such directory")
        self.files = sorted(self.dir.glob("*.pt"))
        if not self.files:
            raise SigmaUserError(f"{self.dir}: no .pt shard files")
        self.opts = opts
        self.info = SourceInfo(
            kind="sigma-shards",
            dataset=str(self.dir),
            fps=0.0,
            action_dim=action_dim,
            state_dim=state_dim,
            cameras={c: f"vision_inputs[{i}]" for i, c in enumerate(opts.cameras)},
            fingerprint={f.name: sha256_file(f) for f in self.files},
            extra={"meta": {"interpretation": interpretation(self._first(), opts)}},
        )

    def _first(self) -> dict[str, Any]:
        first = load_pt(self.files[0])
        if not first:
            raise SigmaUserError(f"{self.files[0]}: no windows")
        missing = [f for f in FIELDS if f not in first[0]]
        if missing:
            raise SigmaUserError(f"{self.files[0]} window 0: missing field(s) {', '.join(missing)}")
        return first[0]

    def groups(self) -> list[list[str]]:
        return [[f.name] for f in self.files]

    def build(self, group: list[str]) -> tuple[dict[str, np.ndarray], list[str], dict[str, Any]]:
        (name,) = group
        file_no = [f.name for f in self.files].index(name)
        samples = load_pt(self.dir / name)
        o = self.opts
        counts: dict[str, Any] = {
            "candidates": len(samples),
            "dropped_nonfinite": 0,
            "dropped_static": 0,
            "short_episodes": {},
        }
        seen: set[int] = set()  # pseudo-episodes of this file, kept or not
        parts: list[dict[str, np.ndarray]] = []
        tasks: list[str] = []
        prev_traj, episode, run = None, -1, 0
        last_episode, index = None, 0
        for i, s in enumerate(samples):
            where = f"{self.dir / name} window {i}"
            missing = [f for f in FIELDS if f not in s]
            if missing:
                raise SigmaUserError(f"{where}: missing field(s) {', '.join(missing)}")
            vec, chk, trj, state = (
                np.asarray(s[k], dtype=np.float32)
                for k in (
                    "gt_action_vector",
                    "gt_action_chunk",
                    "gt_action_trajectory",
                    "robot_state",
                )
            )
            sequence = is_sequence(s, o.horizon)
            if sequence:
                state = state[0]  # the state sequence's first: the observation's state
            want = {
                "gt_action_vector": (self.info.action_dim,),
                "gt_action_chunk": (o.chunk, self.info.action_dim),
                "gt_action_trajectory": (o.horizon, self.info.action_dim),
            }
            for key, arr in zip(want, (vec, chk, trj), strict=True):
                if arr.shape != want[key]:
                    raise SigmaUserError(
                        f"{where}: {key} has shape {arr.shape}, expected {want[key]} "
                        "(check --horizon and the spec's chunk_horizon, action_dim, state_dim)"
                    )
            if "episode_index" in s:
                episode = int(s["episode_index"])
            elif prev_traj is None or not _continues(prev_traj, trj):
                run += 1
                episode = file_no * _EPISODE_STRIDE + run
            prev_traj = trj
            seen.add(episode)
            if not all(np.isfinite(a).all() for a in (vec, chk, trj, state)):
                counts["dropped_nonfinite"] += 1
                continue
            if "avg_action_l2" in s:
                avg, mx = float(s["avg_action_l2"]), float(s.get("max_action_l2", np.nan))
            else:
                a, m = action_l2(trj[None], o.l2_of)
                avg, mx = float(a[0]), float(m[0])
            if avg < o.min_action_norm:
                counts["dropped_static"] += 1
                continue
            text = _text(s, where)
            if text not in tasks:
                tasks.append(text)
            frames = _images(s["vision_inputs"], len(o.cameras), o.image_size, where, sequence)
            # each window is one stored frame: its observation, with the window's targets
            index = index + 1 if episode == last_episode else 0
            last_episode = episode
            parts.append(
                shard_columns(
                    frames={c: img[None] for c, img in zip(o.cameras, frames, strict=True)},
                    state=state[None],
                    action=vec[None],
                    episode=episode,
                    frame_index=np.array([index]),
                    first_row=len(parts),
                    window_start=np.zeros(1, np.int64),
                    task=tasks.index(text),
                    trajectory=trj[None],
                    chunk=chk[None],
                    vector=vec[None],
                    avg_action_l2=np.array([avg]),
                    max_action_l2=np.array([mx]),
                )
            )
        counts["episodes_in"] = len(seen)
        return concat_columns(parts), tasks, counts


def import_paper_shards(
    directory: str | Path,
    out: str | Path,
    opts: PreprocessOptions,
    *,
    action_dim: int,
    state_dim: int,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Convert the paper's shards in ``directory`` into Sigma shards under ``out``."""
    src = PaperShards(directory, opts, action_dim, state_dim)

    def build(group: list[str]) -> tuple[dict[str, np.ndarray], list[str], dict[str, Any]]:
        result = src.build(group)
        if progress:
            progress(1)
        return result

    return write_shards(out, src.info, opts, src.groups(), build, progress)
