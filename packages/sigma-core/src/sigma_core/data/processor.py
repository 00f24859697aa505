"""One observation processor: raw frames -> resize with pad -> frame history -> normalise.

Shaped like LeRobot's processor steps (each step a small object with
``__call__`` and ``reset``), and used by every path that turns observations
into what a policy reads, so that a policy sees at deployment exactly what it
was trained on:

* preprocessing stores frames through :class:`ResizeWithPad` (the sources call
  :func:`~sigma_core.data.images.resize_with_pad`, its kernel), and the loader
  cuts histories with the rule of :class:`FrameHistory` and normalises with
  :class:`~sigma_core.data.stats.Normalizer`;
* the simulator's closed loop (``sigma_sim.rollout.Observer``) and
* the LeRobot policy (``lerobot_policy_sigma``) run :class:`ObservationProcessor`.

Frames may come as uint8 or as float in [0, 1] (LeRobot's convention), channels
first or last, of any size: :func:`to_uint8_frames` maps float frames back to the
exact uint8 values they were made from, so every path resizes the same bytes.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from sigma_core.data.images import resize_with_pad
from sigma_core.data.loader import ENVIRONMENT_STATE, ENVIRONMENT_STATE_EPS
from sigma_core.data.stats import Normalizer
from sigma_core.errors import SigmaUserError

if TYPE_CHECKING:
    from sigma_core.types import SigmaBatch

STATE = "observation.state"


def to_uint8_frames(frames: torch.Tensor | np.ndarray) -> torch.Tensor:
    """(N, 3, H, W) uint8 from uint8 or [0, 1] float frames, (H, W, 3) / (3, H, W) or batched.

    Float frames are ``u / 255`` of uint8 values ``u`` (cameras, video decoders and
    LeRobot's observation conversion make them so): ``round(x · 255)`` recovers
    ``u`` exactly.
    """
    x = torch.as_tensor(frames)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4:
        raise ValueError(f"frames must be (H, W, 3), (3, H, W) or batched, got {tuple(x.shape)}")
    if x.shape[1] != 3 and x.shape[-1] == 3:
        x = x.permute(0, 3, 1, 2)
    if x.dtype != torch.uint8:
        x = (x.float() * 255).round_().clamp_(0, 255).to(torch.uint8)
    return x.contiguous()


class ResizeWithPad:
    """Step 1: raw frames of any size -> (N, 3, P, P) uint8, letterboxed (aspect kept)."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, frames: torch.Tensor | np.ndarray) -> torch.Tensor:
        return resize_with_pad(to_uint8_frames(frames), self.size)

    def reset(self) -> None:
        """Stateless."""


class FrameHistory:
    """Step 2: the F most recent frames per camera; at an episode start the first frame
    is repeated, as the training loader repeats it.

    A frame may be ``None`` (not rendered): it keeps its place, and :meth:`window`
    refuses a history that holds one.
    """

    def __init__(self, frames: int) -> None:
        if frames < 1:
            raise SigmaUserError(f"frame_history must be >= 1, got {frames}")
        self.frames = frames
        self._buffer: deque[torch.Tensor | None] = deque(maxlen=frames)

    def reset(self) -> None:
        self._buffer.clear()

    def push(self, frame: torch.Tensor | None) -> None:
        """Add the newest frame (C, 3, P, P) or (B, C, 3, P, P) (or ``None``)."""
        if not self._buffer:
            self._buffer.extend([frame] * self.frames)
        else:
            self._buffer.append(frame)

    @property
    def complete(self) -> bool:
        """Whether every frame of the history was rendered."""
        return bool(self._buffer) and all(f is not None for f in self._buffer)

    def window(self) -> torch.Tensor:
        """(C, F, 3, P, P) (or (B, C, F, 3, P, P) for batched frames): oldest first."""
        if not self.complete:
            raise RuntimeError("a frame the policy reads was not rendered")
        return torch.stack(list(self._buffer), dim=-4)  # type: ignore[arg-type]

    def __call__(self, frame: torch.Tensor) -> torch.Tensor:
        self.push(frame)
        return self.window()


class NormalizeObservation:
    """Step 3: ``(x − mean) / std`` of the robot state (and the scene state, when read),
    with the statistics the policy was trained with."""

    def __init__(self, stats: Mapping[str, Any], environment_state_dim: int = 0) -> None:
        if STATE not in stats:
            raise SigmaUserError(f"normalisation statistics have no {STATE!r}")
        self.state = Normalizer(stats[STATE])
        self.environment: Normalizer | None = None
        if environment_state_dim:
            env = stats.get(ENVIRONMENT_STATE)
            if env is None or len(env["mean"]) != environment_state_dim:
                got = None if env is None else len(env["mean"])
                raise SigmaUserError(
                    f"the policy reads {ENVIRONMENT_STATE} ({environment_state_dim} values); "
                    f"its statistics have {got}"
                )
            self.environment = Normalizer(env, eps=ENVIRONMENT_STATE_EPS)

    def __call__(self, state: torch.Tensor) -> torch.Tensor:
        return self.state.normalize(state)

    def reset(self) -> None:
        """Stateless."""


class ObservationProcessor:
    """raw frames -> :class:`ResizeWithPad` -> :class:`FrameHistory` -> normalise -> batch.

    Args:
        cameras: the policy's cameras, in ``dims.cameras`` order.
        image_size: P, the side the policy reads.
        frame_history: F frames per camera.
        stats: normalisation statistics (meta.json's ``stats`` layout: ``{feature:
            {mean, std, ...}}``), the ones the policy was trained with.
        environment_state_dim: scene-state width the policy reads (0: none).
    """

    def __init__(
        self,
        cameras: Sequence[str],
        image_size: int,
        frame_history: int,
        stats: Mapping[str, Any],
        environment_state_dim: int = 0,
    ) -> None:
        self.cameras = list(cameras)
        self.resize = ResizeWithPad(image_size)
        self.history = FrameHistory(frame_history)
        self.normalize = NormalizeObservation(stats, environment_state_dim)
        self.steps = (self.resize, self.history, self.normalize)

    @classmethod
    def for_policy(cls, dims: Any, stats: Mapping[str, Any]) -> ObservationProcessor:
        """The processor of a policy with ``dims`` (a :class:`~sigma_core.config.Dims`)."""
        return cls(
            dims.cameras,
            dims.image_size,
            dims.frame_history,
            stats,
            dims.environment_state_dim or 0,
        )

    def reset(self) -> None:
        """Start an episode (clears the frame history)."""
        for step in self.steps:
            step.reset()

    def images(self, frames: Mapping[str, Any]) -> torch.Tensor:
        """(C, 3, P, P) uint8: one raw frame per camera (any size), resized with pad."""
        missing = [c for c in self.cameras if c not in frames]
        if missing:
            raise SigmaUserError(f"observation has no camera {missing} (has {sorted(frames)})")
        return torch.cat([self.resize(frames[c]) for c in self.cameras])

    def __call__(
        self,
        frames: Mapping[str, Any],
        state: torch.Tensor | np.ndarray,
        task: str,
        environment_state: torch.Tensor | np.ndarray | None = None,
    ) -> SigmaBatch:
        """One step of an episode as a batch of 1: images (1, C, F, 3, P, P) in [0, 1]."""
        from sigma_core.types import SigmaBatch

        window = self.history(self.images(frames))
        env = None
        if self.normalize.environment is not None:
            if environment_state is None:
                raise ValueError(f"this policy reads {ENVIRONMENT_STATE}; pass it")
            env = self.normalize.environment.normalize(torch.as_tensor(environment_state))[None]
        return SigmaBatch(
            images=window[None].float().div_(255),
            state=self.normalize(torch.as_tensor(state, dtype=torch.float32))[None],
            texts=[task],
            environment_state=env,
        )


#: the statistics a policy keeps with it (the rest of meta.json's stats is not read)
POLICY_STATS = ("observation.state", "action", "action.relative", ENVIRONMENT_STATE)


def policy_stats(stats: Mapping[str, Any]) -> dict[str, Any]:
    """The part of meta.json's ``stats`` a policy is normalised with (saved in it)."""
    return {k: dict(v) for k, v in stats.items() if k in POLICY_STATS}
