"""``SigmaConfig``: LeRobot's view of a Sigma run spec."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lerobot.configs.policies import PreTrainedConfig
from lerobot.configs.types import FeatureType, NormalizationMode
from lerobot.optim.optimizers import AdamWConfig

IMAGE_PREFIX = "observation.images."


@PreTrainedConfig.register_subclass("sigma")
@dataclass
class SigmaConfig(PreTrainedConfig):
    """A Sigma policy for LeRobot.

    ``spec``: a Sigma run spec (YAML path) for the model and training stage; empty
    uses Sigma's defaults. ``spec_dict`` holds the resolved spec once a policy is
    built (it is what checkpoints save, so a saved policy needs no file). The
    spec's ``model.dims`` (cameras, state and action sizes, image size) are taken
    from LeRobot's input/output features; ``horizon`` / ``chunk_horizon`` from the
    spec. State and actions are normalised mean/std, as Sigma's own shards are: the
    state by Sigma's observation processor with ``normalization_stats``, the actions
    by LeRobot's processors. ``bundled`` names spec paths (the frozen base of a
    stage-sigma export) that live inside the saved folder and resolve against it
    wherever it is loaded.
    """

    spec: str = ""
    spec_dict: dict[str, Any] = field(default_factory=dict)
    # spec key -> subfolder of the saved policy (a `sigma export` bundles its frozen base
    # as base/): resolved against the folder the policy is loaded from
    bundled: dict[str, str] = field(default_factory=dict)
    n_action_steps: int | None = None  # executed per plan; default the spec's stride

    # The state is normalised by the policy's own observation processor (sigma_core's,
    # the one Sigma's preprocessing and closed loop use) with normalization_stats;
    # LeRobot's processors normalise the actions. Checkpoints saved with STATE:
    # MEAN_STD (before) keep LeRobot normalising their state.
    normalization_mapping: dict[str, NormalizationMode] = field(
        default_factory=lambda: {
            "VISUAL": NormalizationMode.IDENTITY,
            "STATE": NormalizationMode.IDENTITY,
            "ACTION": NormalizationMode.MEAN_STD,
        }
    )
    # the statistics the policy was trained with ({feature: {mean, std, ...}}, lists):
    # from the dataset when lerobot-train builds it, from sigma.json in a sigma export
    normalization_stats: dict[str, Any] = field(default_factory=dict)
    optimizer_lr: float = 1e-4
    optimizer_weight_decay: float = 1e-4

    def raw_spec(self) -> dict[str, Any]:
        """The spec as a dict: ``spec_dict`` if set, else the YAML file, else stage ``base``.

        Without a spec, Sigma's defaults train stage base (the τ = 0 policy on the
        dataset); stage sigma needs a base to sit on (a spec with ``base_policy``,
        e.g. ``{type: lerobot, path: <an ACT checkpoint>}``).
        """
        if self.spec_dict:
            return dict(self.spec_dict)
        if not self.spec:
            return {"train": {"stage": "base"}}
        import yaml

        path = Path(self.spec)
        if not path.is_file():
            from sigma_core import SigmaUserError

            raise SigmaUserError(f"--policy.spec {self.spec}: no such file")
        return yaml.safe_load(path.read_text()) or {}

    def horizons(self) -> tuple[int, int]:
        """(T, H_c) of the spec (Sigma's defaults when it does not say)."""
        from sigma_core import Dims

        dims = {**Dims().model_dump(), **self.raw_spec().get("model", {}).get("dims", {})}
        return int(dims["horizon"]), int(dims["chunk_horizon"])

    @property
    def observation_delta_indices(self) -> list[int] | None:
        """The spec's frame history F: the F most recent frames (LeRobot repeats the
        episode's first frame before it starts, as Sigma's loader does)."""
        frames = int(self.raw_spec().get("model", {}).get("dims", {}).get("frame_history", 1))
        return list(range(1 - frames, 1)) if frames > 1 else None

    @property
    def action_delta_indices(self) -> list[int]:
        return list(range(self.horizons()[0]))  # the T-step trajectory target

    @property
    def reward_delta_indices(self) -> None:
        return None

    def get_optimizer_preset(self) -> AdamWConfig:
        return AdamWConfig(lr=self.optimizer_lr, weight_decay=self.optimizer_weight_decay)

    def get_scheduler_preset(self) -> None:
        return None

    def validate_features(self) -> None:
        if not self.image_features:
            raise ValueError("sigma needs at least one camera (an observation.images.* feature)")
        if self.robot_state_feature is None or self.action_feature is None:
            raise ValueError("sigma needs observation.state and action features")

    def dims(self) -> dict[str, Any]:
        """Sigma's ``model.dims`` from the features and the spec's horizons."""
        images = [k for k, f in self.input_features.items() if f.type is FeatureType.VISUAL]
        sides = {self.input_features[k].shape[-1] for k in images}
        horizon, chunk = self.horizons()
        spec_dims = self.raw_spec().get("model", {}).get("dims", {})
        return {
            **spec_dims,
            "cameras": [k.removeprefix(IMAGE_PREFIX) for k in images],
            "state_dim": int(self.robot_state_feature.shape[0]),
            "action_dim": int(self.action_feature.shape[0]),
            "image_size": int(spec_dims.get("image_size", max(sides))),
            "horizon": horizon,
            "chunk_horizon": chunk,
        }
