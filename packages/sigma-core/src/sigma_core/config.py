"""Values every component and spec section shares: :class:`StrictModel` and :class:`Dims`.

Plugin configs import this module (through the facade: ``from sigma_core import
StrictModel, Dims``), not the run spec: a component's parameters do not depend on
how a run file is laid out. Imports pydantic only.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveInt, model_validator


class StrictModel(BaseModel):
    """Base for spec sections and component configs: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


class Dims(StrictModel):
    """Dimensions shared by every component (the shape symbols in brackets)."""

    d_model: PositiveInt = Field(64, description="[D] width of vision, intent and action tokens")
    action_dim: PositiveInt = Field(6, description="[A] action dimension (SO-101: 6 joints)")
    state_dim: PositiveInt = Field(6, description="[S] robot state dimension")
    chunk_horizon: PositiveInt = Field(8, description="[H] chunk branch horizon H_c")
    horizon: PositiveInt = Field(16, description="[T] trajectory horizon (window length)")
    cameras: list[str] = Field(
        default_factory=lambda: ["overhead", "wrist"], min_length=1, description="[C] camera names"
    )
    image_size: PositiveInt = Field(96, description="[P] square image side in pixels")
    frame_history: PositiveInt = Field(1, description="[F] frames per camera (history)")
    environment_state_dim: NonNegativeInt = Field(
        0,
        description="[S_env] privileged scene state the vision's state encoder also reads "
        "(LeRobot's observation.environment_state; 0: none; oracle specs only)",
    )
    auxiliary_state_dim: NonNegativeInt = Field(
        0,
        description="[S_aux] privileged scene state (observation.environment_state) that an"
        " auxiliary head predicts from the vision tokens while the base trains: supervision"
        " only, never an input (0: none; weight train.losses.lambda_state)",
    )

    @model_validator(mode="after")
    def _one_scene_state(self) -> Dims:
        e, a = self.environment_state_dim, self.auxiliary_state_dim
        if e and a and e != a:
            raise ValueError(
                f"environment_state_dim={e} and auxiliary_state_dim={a} both read "
                "observation.environment_state: they must be equal"
            )
        return self

    @property
    def scene_state_dim(self) -> int:
        """Width of observation.environment_state the data must supply (0: none needed)."""
        return max(self.environment_state_dim, self.auxiliary_state_dim)

    @property
    def vision_state_dim(self) -> int:
        """[S_v] what the vision workspace's state encoder reads: the robot state, then
        the privileged scene state (``S + S_env``)."""
        return self.state_dim + self.environment_state_dim

    def symbols(self) -> dict[str, int]:
        """Shape symbols -> sizes, as used by component ``inputs``/``outputs`` declarations."""
        return {
            "D": self.d_model,
            "A": self.action_dim,
            "S": self.state_dim,
            "S_v": self.vision_state_dim,
            "H": self.chunk_horizon,
            "T": self.horizon,
            # tau lives in the action-condition space: L_tau and the adapter's
            # risk compare tau with c_act by cosine, so E = D by construction.
            "E": self.d_model,
            "C": len(self.cameras),
            "P": self.image_size,
            "F": self.frame_history,
        }
