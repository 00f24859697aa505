"""Configuration of the SO-101 pick-and-place data source (no torch, no mujoco)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: Cube and goal colours: ``so101_nexus.constants.CUBE_COLOR_MAP`` (gray is the floor).
Colour = Literal["red", "orange", "yellow", "green", "blue", "purple", "black", "white"]
PALETTE: tuple[Colour, ...] = (
    "red",
    "orange",
    "yellow",
    "green",
    "blue",
    "purple",
    "black",
    "white",
)
#: Fields that change how a run is carried out but not the episodes it writes.
RUN_ONLY_FIELDS = frozenset({"commit_every", "max_attempts_factor"})


class So101PickPlaceConfig(BaseModel):
    """Parameters of ``data_source: so101-pickplace`` (scripted SO-101 pick-and-place).

    Every episode draws a cube colour from ``cube_colors``, a goal-disc colour
    from ``target_colors`` and positions in the reachable annulus; the simulator's
    task text names both ("Pick up the red cube and place it on the blue circle.").
    With ``distractors`` > 0 that many cubes of *other* colours share the table,
    so only the instruction tells which one to move.
    """

    model_config = ConfigDict(extra="forbid")

    image_size: int = Field(96, ge=16, le=512, description="square camera images, pixels")
    fps: int = Field(30, ge=5, le=100, description="dataset fps = simulator control rate")
    distractors: int = Field(0, ge=0, le=4, description="extra cubes of other colours")
    max_seconds: float = Field(
        15.0, gt=2.0, le=120.0, description="an attempt not done by then fails"
    )
    max_attempts_factor: float = Field(
        4.0, ge=1.0, le=1000.0, description="give up after factor * episodes (min 10) attempts"
    )
    use_videos: bool = Field(False, description="store cameras as AV1 videos, not PNG images")
    repo_id: str = Field("sigma/so101_pickplace_sim", min_length=3, pattern=r"^[\w.\-]+/[\w.\-]+$")
    commit_every: int = Field(
        1, ge=1, le=1000, description="episodes per commit (finalize + journal); a kill loses less"
    )
    mesh_faces: int = Field(
        1000, ge=100, le=200_000, description="triangle budget per visual mesh (rendering only)"
    )
    cube_colors: list[Colour] = Field(default_factory=lambda: list(PALETTE), min_length=1)
    target_colors: list[Colour] = Field(default_factory=lambda: list(PALETTE), min_length=1)
    spawn_min_radius: float = Field(0.05, ge=0.0, le=0.3, description="m from spawn centre")
    spawn_max_radius: float = Field(0.15, gt=0.0, le=0.3, description="m from spawn centre")
    spawn_angle_deg: float = Field(60.0, gt=0.0, le=180.0, description="half angle of the arc")
    clear_distractors: bool = Field(
        True,
        description="enforce so101_nexus' clearances for distractors (off the goal, apart "
        "from the cube), widening their arc where it has no room; false: the old, "
        "overlapping fallback (recordings made before this option)",
    )

    @model_validator(mode="after")
    def _check(self) -> So101PickPlaceConfig:
        if self.spawn_max_radius <= self.spawn_min_radius:
            raise ValueError("spawn_max_radius must be greater than spawn_min_radius")
        if len(set(self.cube_colors)) != len(self.cube_colors):
            raise ValueError("cube_colors has duplicates")
        if len(set(self.target_colors)) != len(self.target_colors):
            raise ValueError("target_colors has duplicates")
        if self.distractors and self.distractors >= len(self.cube_colors):
            raise ValueError(
                f"distractors={self.distractors} needs at least {self.distractors + 1} "
                f"cube_colors (one for the cube to move, one per distractor)"
            )
        return self

    def content_key(self) -> dict[str, Any]:
        """The fields that determine the episodes written (resume must match them);
        ``clear_distractors`` only when there are distractors (it changes nothing else)."""
        exclude = set(RUN_ONLY_FIELDS) | (set() if self.distractors else {"clear_distractors"})
        return self.model_dump(mode="json", exclude=exclude)
