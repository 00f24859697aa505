"""``base_policy: pi05``: a_base = π0.5's action chunk, deterministic and frozen."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from sigma_core import ActionSet, BasePolicy, Dims, SigmaBatch, SigmaUserError, register_pretrained
from sigma_pi05.config import Pi05BaseConfig
from sigma_pi05.fixtures import contract_source
from sigma_pi05.loading import IMAGE_PREFIX, adapters_disabled, shared_pi05

STATS = ("mean", "std", "q01", "q99", "min", "max")
FEATURES = {"state": "observation.state", "action": "action"}


class Pi05Base(BasePolicy):
    """π0.5's actions as a_base, in the spec's three horizons.

    With ``x`` the frame's observation (each spec camera's latest image mapped to
    a π0.5 image key, the state in dataset units, the task text), LeRobot's
    π0.5 pre-processor (quantile normalisation, the state written into the
    prompt, PaliGemma tokens), ``A = predict_action_chunk(x, noise=ε)`` with one
    fixed ``ε ~ N(0, I)`` (seed ``noise_seed``, the same for every sample, so a
    window's a_base does not depend on its batch) and the post-processor back to
    dataset units::

        a_base.vector = A[:, 0],  a_base.chunk = A[:, :H_c],  a_base.trajectory = A[:, :T]

    each then in Sigma's normalised space ``(a − mean) / std``. Sigma's batches
    hold normalised state, so the base keeps the data's statistics in buffers
    (:meth:`set_data_stats`; checkpoints carry them). π0.5 is frozen and runs
    with any LoRA injected into its shared language model bypassed.
    """

    name = "pi05"
    config_class = Pi05BaseConfig

    def __init__(self, config: Pi05BaseConfig, dims: Dims) -> None:
        super().__init__(config, dims)
        loaded = shared_pi05(config, dims)
        self.pi05 = loaded.policy
        self.tokenizer = loaded.tokenizer
        self.directory = loaded.directory
        register_pretrained(self, "pi05", loaded.record)
        pc = self.pi05.config
        self.image_keys = self._image_keys(config.camera_map, list(pc.image_features))
        have_a = pc.output_features["action"].shape[0]
        have_s = pc.input_features["observation.state"].shape[0]
        if dims.action_dim > have_a or dims.state_dim > have_s:
            raise SigmaUserError(
                f"base_policy pi05 ({config.path}): π0.5 has action dim {have_a} and state dim "
                f"{have_s}; the spec's model.dims asks for {dims.action_dim} and {dims.state_dim}"
            )
        if pc.chunk_size < dims.horizon:
            raise SigmaUserError(
                f"base_policy pi05: π0.5's chunk of {pc.chunk_size} is shorter than "
                f"model.dims.horizon T = {dims.horizon}"
            )
        for feature, n in (("state", dims.state_dim), ("action", dims.action_dim)):
            for stat in STATS:
                neutral = {"std": 1.0, "q01": -1.0, "q99": 1.0, "min": -1.0, "max": 1.0}
                value = torch.full((n,), neutral.get(stat, 0.0))
                self.register_buffer(f"{feature}_{stat}", value)
        self._pipes: tuple[Any, Any] | None = None
        # new statistics (a checkpoint's buffers) mean new LeRobot normalizer steps
        self.register_load_state_dict_post_hook(
            lambda module, _: module.__dict__.update(_pipes=None)
        )

    def _image_keys(self, camera_map: Mapping[str, str], available: Sequence[str]) -> list[str]:
        keys = []
        for cam in self.dims.cameras:
            key = camera_map.get(cam, f"{IMAGE_PREFIX}{cam}")
            if key not in available:
                raise SigmaUserError(
                    f"base_policy.camera_map: camera {cam!r} -> {key!r} is not one of π0.5's "
                    f"image inputs ({', '.join(available)})"
                )
            keys.append(key)
        unknown = set(camera_map) - set(self.dims.cameras)
        if unknown:
            raise SigmaUserError(
                f"base_policy.camera_map: {sorted(unknown)} not in model.dims.cameras"
            )
        return keys

    def train(self, mode: bool = True) -> Pi05Base:
        super().train(mode)
        self.pi05.eval()  # frozen: no dropout, ever
        return self

    def set_data_stats(self, stats: Mapping[str, Mapping[str, Sequence[float]]]) -> None:
        """Keep the data's state/action statistics (meta.json ``stats``) in buffers."""
        for feature, key in FEATURES.items():
            n = getattr(self, f"{feature}_mean").numel()
            for stat in STATS:
                value = torch.as_tensor(stats[key][stat], dtype=torch.float32)[:n]
                getattr(self, f"{feature}_{stat}").copy_(value)
        self._pipes = None

    def _pipelines(self) -> tuple[Any, Any]:
        """LeRobot's π0.5 pre/post-processors: the directory's own, else from the data stats."""
        if self._pipes is None:
            self._pipes = self._make_pipelines()
        return self._pipes

    def _make_pipelines(self) -> tuple[Any, Any]:
        from lerobot.policies.pi05 import processor_pi05
        from lerobot.processor import TokenizerProcessorStep

        if self.directory and (self.directory / "policy_preprocessor.json").is_file():
            return _saved_pipelines(self.directory, self.tokenizer)
        stats = {FEATURES[f]: {s: getattr(self, f"{f}_{s}").cpu() for s in STATS} for f in FEATURES}
        # LeRobot hard-codes the hub tokenizer google/paligemma-3b-pt-224; give it ours
        step = functools.partial(TokenizerProcessorStep, tokenizer=self.tokenizer)
        original = processor_pi05.TokenizerProcessorStep
        processor_pi05.TokenizerProcessorStep = step
        try:
            return processor_pi05.make_pi05_pre_post_processors(self.pi05.config, stats)
        finally:
            processor_pi05.TokenizerProcessorStep = original

    def lerobot_batch(self, batch: SigmaBatch) -> dict[str, Any]:
        """The raw LeRobot observation of ``batch`` (dataset units, [0, 1] images, tasks)."""
        state = batch.state * self.state_std + self.state_mean
        obs: dict[str, Any] = {"observation.state": state, "task": list(batch.texts)}
        for i, key in enumerate(self.image_keys):
            obs[key] = batch.images[:, i, -1]  # the latest frame
        return obs

    def noise(self, batch_size: int, device: torch.device) -> Tensor:
        """The fixed denoiser noise ε (one draw, repeated over the batch)."""
        pc = self.pi05.config
        g = torch.Generator().manual_seed(self.config.noise_seed)
        eps = torch.randn(1, pc.chunk_size, pc.max_action_dim, generator=g)
        return eps.expand(batch_size, -1, -1).to(device)

    @torch.no_grad()
    def chunk(self, batch: SigmaBatch) -> Tensor:
        """π0.5's action chunk (B, 50, A) in dataset units."""
        pre, post = self._pipelines()
        device = batch.state.device
        inputs = pre(self.lerobot_batch(batch))
        inputs = {k: v.to(device) if isinstance(v, Tensor) else v for k, v in inputs.items()}
        kwargs = {"num_steps": self.config.num_steps} if self.config.num_steps else {}
        with adapters_disabled(self.pi05):
            actions = self.pi05.predict_action_chunk(
                inputs, noise=self.noise(batch.batch_size, device), **kwargs
            )
        return post(actions).to(device)[..., : self.dims.action_dim]

    @torch.no_grad()
    def forward(self, batch: SigmaBatch) -> ActionSet:
        a = (self.chunk(batch) - self.action_mean) / self.action_std
        d = self.dims
        return ActionSet(a[:, 0], a[:, : d.chunk_horizon], a[:, : d.horizon])

    @classmethod
    def contract_config(cls, workdir: Path | None = None, dims: Dims | None = None) -> Any:
        """A shrunken π0.5 saved under ``workdir`` (offline)."""
        return Pi05BaseConfig(**contract_source(workdir, dims))


def _saved_pipelines(directory: Path, tokenizer: Any) -> tuple[Any, Any]:
    from lerobot.processor import PolicyProcessorPipeline

    overrides = {
        "tokenizer_processor": {"tokenizer": tokenizer},
        "device_processor": {"device": "cpu"},
    }
    pre = PolicyProcessorPipeline.from_pretrained(
        str(directory), config_filename="policy_preprocessor.json", overrides=overrides
    )
    post = PolicyProcessorPipeline.from_pretrained(
        str(directory), config_filename="policy_postprocessor.json"
    )
    return pre, post
