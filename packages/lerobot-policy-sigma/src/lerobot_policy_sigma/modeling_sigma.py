"""``SigmaPolicy`` for LeRobot: sigma_core's SigmaPolicy behind LeRobot's policy interface."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from lerobot.policies.pretrained import PreTrainedPolicy
from torch import Tensor

from lerobot_policy_sigma.configuration_sigma import IMAGE_PREFIX, SigmaConfig
from sigma_core import SigmaUserError
from sigma_core.data import FrameHistory


def stats_as_lists(stats: dict[str, Any]) -> dict[str, Any]:
    """LeRobot's dataset stats (tensors / arrays) as JSON lists, only what Sigma keeps."""
    from sigma_core.data import policy_stats

    return {
        k: {s: torch.as_tensor(v).flatten().tolist() for s, v in feature.items()}
        for k, feature in policy_stats(stats).items()
    }


#: hub arguments of LeRobot's ``from_pretrained`` that ``snapshot_download`` takes too
HUB_ARGS = ("revision", "cache_dir", "force_download", "token", "local_files_only")


class SigmaPolicy(PreTrainedPolicy):
    """A Sigma model (vision, intent with memory, τ, residual heads over a base) for LeRobot.

    * ``forward(batch)``: the spec's stage objective (stage ``base``: TRAF + L_fuse on
      the τ = 0 path; stage ``sigma``: TRAF of ``a_base + Δa`` + the ramped TSAC
      terms), on LeRobot's normalised batch with ``action`` (B, T, A) as the target
      trajectory (its first step the vector, its first H_c steps the chunk).
    * ``select_action`` / ``reset``: Sigma's streaming control (memory carried
      across plans, actions served from the plan queue), computed without dropout and
      leaving every module's train/eval mode as it was.
    * ``predict_action_chunk``: one plan ``controller(fusion(a_base + s·Δa))`` (B, H_c, A).

    Only the stage's trainable parameters reach the optimizer (``get_optim_params``).
    """

    config_class = SigmaConfig
    name = "sigma"

    def __init__(
        self, config: SigmaConfig, bundle_root: str | Path | None = None, **kwargs: Any
    ) -> None:
        super().__init__(config)
        config.validate_features()
        from sigma_core import SigmaPolicy as Model
        from sigma_core import get_registry, resolve_bundled, validate_spec
        from sigma_core.train import LossConfig, StageObjective

        raw = config.raw_spec()
        raw.setdefault("model", {})["dims"] = config.dims()
        if config.bundled:  # a frozen base inside the saved folder (sigma export)
            root = bundle_root or config.pretrained_path
            if root is None:
                raise SigmaUserError(
                    f"this Sigma policy bundles {', '.join(config.bundled)} in its folder; "
                    "load it with from_pretrained(<the folder>)"
                )
            raw = resolve_bundled(raw, config.bundled, root)
            self.bundle_root: Path | None = Path(root)
        else:
            self.bundle_root = None
        spec = validate_spec(raw, get_registry(), source=config.spec or "--policy.spec")
        saved = spec.model_dump(mode="json")
        for key, folder in config.bundled.items():  # saved relative, as it was loaded
            *parents, last = key.split(".")
            node = saved
            for part in parents:
                node = node[part]
            node[last] = folder
        config.spec_dict = saved  # saved with the policy
        self.model = Model(spec)
        self.stage = spec.train.stage
        losses = spec.train.losses or LossConfig()
        self.objective = StageObjective(self.model, spec.train.stage, losses, spec.train.steps)
        self.image_keys = [f"{IMAGE_PREFIX}{c}" for c in spec.model.dims.cameras]
        # the TSAC ramps' step t: a buffer, so LeRobot's checkpoints (and --resume) keep it
        self.register_buffer("tsac_step", torch.zeros((), dtype=torch.long))
        # The stage's trainable set is applied when training starts (get_optim_params,
        # train(), a training forward), not here: a policy loaded for inference keeps the
        # requires_grad flags sigma_core's loader gives it, and so plans bit-identically
        # (torch picks other kernels for frozen weights). Under LeRobot's PEFT the
        # adapter, not the stage, decides what trains.
        self._stage_configured = False
        if not config.normalization_stats and kwargs.get("dataset_stats") is not None:
            config.normalization_stats = stats_as_lists(kwargs["dataset_stats"])
        self._processor: Any = None
        self.history = FrameHistory(spec.model.dims.frame_history)
        self.reset()

    def configure_for_training(self) -> None:
        """Freeze all but the spec's stage (once; never under LeRobot's PEFT)."""
        from sigma_core.train import configure_stage

        if self._stage_configured or self.config.use_peft:
            return
        configure_stage(self.model, self.stage)
        self._stage_configured = True

    def train(self, mode: bool = True) -> SigmaPolicy:
        if mode:
            self.configure_for_training()
        return super().train(mode)

    @classmethod
    def from_pretrained(  # type: ignore[override]
        cls,
        pretrained_name_or_path: str | Path,
        *,
        config: SigmaConfig | None = None,
        **kwargs: Any,
    ) -> SigmaPolicy:
        """LeRobot's loader, with the folder's bundled base resolved against the folder.

        A hub id is downloaded whole (``snapshot_download``: a bundled ``base/`` is a
        subfolder), then loaded like a local folder.
        """
        from lerobot.configs.policies import PreTrainedConfig

        root = Path(pretrained_name_or_path).expanduser()
        if not root.is_dir():
            from huggingface_hub import snapshot_download

            hub = {k: kwargs[k] for k in HUB_ARGS if kwargs.get(k) is not None}
            root = Path(snapshot_download(str(pretrained_name_or_path), **hub))
        if config is None:
            config = PreTrainedConfig.from_pretrained(root)
        return super().from_pretrained(root, config=config, bundle_root=root, **kwargs)

    def _save_pretrained(self, save_directory: Path, state_dict: Any = None) -> None:
        """LeRobot's save, plus the bundled folders (the saved config names them relatively)."""
        super()._save_pretrained(save_directory, state_dict=state_dict)
        if self.bundle_root is None:
            return
        for folder in set(self.config.bundled.values()):
            src, dst = self.bundle_root / folder, Path(save_directory) / folder
            if src.resolve() != dst.resolve():
                shutil.copytree(src, dst, dirs_exist_ok=True)

    @classmethod
    def _load_as_safetensor(
        cls, model: SigmaPolicy, model_file: str, map_location: str, strict: bool
    ) -> SigmaPolicy:
        """LeRobot's checkpoints prefix Sigma's tensors with ``model.``; a ``sigma export``
        folder (or a saved sigma_core policy) holds them unprefixed: load either."""
        from safetensors import safe_open
        from safetensors.torch import load_model

        with safe_open(model_file, "pt") as f:
            keys = list(f.keys())
        if keys and not any(k.startswith("model.") for k in keys):
            load_model(model.model, model_file, strict=strict, device=str(map_location or "cpu"))
            return model
        return super()._load_as_safetensor(model, model_file, map_location, strict)

    def get_optim_params(self) -> list[torch.nn.Parameter]:
        self.configure_for_training()
        return [p for p in self.parameters() if p.requires_grad]

    def reset(self) -> None:
        self.model.reset(self.config.n_action_steps)
        self.history.reset()

    def normalizes_state(self) -> bool:
        """Whether the policy normalises the state itself (LeRobot's processors do not)."""
        from lerobot.configs.types import NormalizationMode

        mode = self.config.normalization_mapping.get("STATE", NormalizationMode.IDENTITY)
        return mode is NormalizationMode.IDENTITY

    def observation_processor(self) -> Any:
        """Sigma's observation processor with the statistics this policy was trained with.

        Raises:
            SigmaUserError: no statistics (a policy saved before they were kept): pass
                the dataset's to ``make_pre_post_processors(..., dataset_stats=...)``.
        """
        from sigma_core.data import ObservationProcessor

        if self._processor is None:
            stats = self.config.normalization_stats
            if "observation.state" not in stats:
                raise SigmaUserError(
                    "this Sigma policy has no saved normalisation statistics (it was saved "
                    "before they were kept); pass the dataset's to make_pre_post_processors("
                    "config, dataset_stats=...) or export it again with sigma export"
                )
            self._processor = ObservationProcessor.for_policy(self.model.dims, stats)
        return self._processor

    def frames(self, x: Tensor) -> Tensor:
        """(B, [F,] 3, H, W) frames of any size, uint8 or [0, 1] -> (B, F', 3, P, P) in [0, 1],
        resized with pad as the shards were (Sigma's ResizeWithPad)."""
        from sigma_core.data import ResizeWithPad

        lead = x.shape[:-3]
        flat = x.reshape(-1, *x.shape[-3:])
        out = ResizeWithPad(self.model.dims.image_size)(flat.cpu()).to(x.device)
        return out.reshape(*lead, *out.shape[1:]).float().div_(255)

    def sigma_batch(self, batch: dict[str, Any]) -> Any:
        """LeRobot's batch as a :class:`sigma_core.SigmaBatch`, through Sigma's observation
        processor: frames resized with pad, the frame history (LeRobot's delta indices in
        training; kept here between calls at inference), the state normalised with the
        policy's saved statistics (unless LeRobot's processors normalised it)."""
        from sigma_core import ActionSet, SigmaBatch

        f = self.model.dims.frame_history
        per_camera = []
        for key in self.image_keys:
            x = batch[key]
            if x.ndim == 5:  # (B, n, 3, H, W): the dataset's history, the last F frames
                per_camera.append(x[:, -f:])
            else:
                per_camera.append(x[:, None])
        images = self.frames(torch.stack(per_camera, dim=1))  # (B, C, n, 3, P, P)
        if images.shape[2] != f:  # inference: one frame per call, the history kept here
            images = self.history(images[:, :, -1])
        state = batch["observation.state"]
        if state.ndim == 3:
            state = state[:, -1]
        if self.normalizes_state():
            state = self.observation_processor().normalize(state)
        texts = batch.get("task") or [""] * state.shape[0]
        if isinstance(texts, str):
            texts = [texts] * state.shape[0]
        targets = valid = None
        a = batch.get("action")
        if isinstance(a, Tensor) and a.ndim == 3:  # training: the (B, T, A) trajectory
            targets = ActionSet(a[:, 0], a[:, : self.model.dims.chunk_horizon], a)
            pad = batch.get("action_is_pad")  # steps past the episode's end
            valid = None if pad is None else ~pad.bool()
        return SigmaBatch(images, state, list(texts), targets=targets, target_valid=valid)

    def forward(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Any]]:
        """The stage objective at TSAC step ``tsac_step`` (advanced by training calls)."""
        if self.training:
            self.configure_for_training()
        loss, row = self.objective([self.sigma_batch(batch)], int(self.tsac_step))
        if self.training:
            self.tsac_step += 1
        return loss, row

    @contextmanager
    def _inference(self) -> Iterator[None]:
        """Eval semantics (no dropout) for one call; every module's mode is restored after."""
        modes = [(m, m.training) for m in self.modules()]
        self.model.eval()
        try:
            yield
        finally:
            for m, training in modes:
                m.training = training

    @torch.no_grad()
    def predict_action_chunk(self, batch: dict[str, Tensor], **kwargs: Any) -> Tensor:
        with self._inference():
            return self.model.act(self.sigma_batch(batch))[0]

    @torch.no_grad()
    def select_action(self, batch: dict[str, Tensor], **kwargs: Any) -> Tensor:
        with self._inference():
            return self.model.step(self.sigma_batch(batch))
