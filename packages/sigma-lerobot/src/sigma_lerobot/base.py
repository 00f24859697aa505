"""``base_policy: lerobot``: a_base from any pretrained LeRobot policy (ACT, diffusion, ...).

Telepathy on top of the policy a user already trained: the directory written by
``lerobot-train`` (``pretrained_model/``: config.json, model.safetensors and the
saved pre/post-processors) is loaded through LeRobot's own factory, frozen, and
its action chunks become a_base.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from sigma_core import (
    ActionSet,
    BasePolicy,
    Dims,
    SigmaBatch,
    SigmaUserError,
    is_internal_error,
    local_directory,
    register_pretrained,
    shared,
    source_record,
)
from sigma_lerobot.config import LeRobotBaseConfig
from sigma_lerobot.schema import IMAGE_PREFIX

log = logging.getLogger(__name__)

STATS = ("mean", "std", "q01", "q99", "min", "max")
FEATURES = {"state": "observation.state", "action": "action"}


@dataclass
class LoadedPolicy:
    """A frozen LeRobot policy, the directory it came from and its weights' record."""

    policy: nn.Module
    directory: Path | None
    record: dict[str, Any]


class LeRobotBase(BasePolicy):
    """a_base = the action chunk of a frozen LeRobot policy, in the spec's horizons.

    With ``x`` the window's observation in LeRobot's terms (each spec camera's
    latest frame under its image key, the state in dataset units, the task) and
    the policy's own pre/post-processors (saved with it, else built from the
    data's statistics), ``A = post(predict_action_chunk(pre(x)))`` under the fixed
    seed ``noise_seed`` (so a stochastic policy such as diffusion is deterministic)::

        a_base.vector = A[:, 0],  a_base.chunk = A[:, :H_c],  a_base.trajectory = A[:, :T]

    each in Sigma's normalised space ``(a − mean) / std``. The data's statistics
    live in buffers (:meth:`set_data_stats`), so checkpoints carry them; the
    policy's weights are referenced by path and sha256, never copied.
    """

    name = "lerobot"
    config_class = LeRobotBaseConfig
    #: whether the policy pads state and actions (then the spec's first dims are used)
    pads_dims = False

    def __init__(self, config: Any, dims: Dims) -> None:
        super().__init__(config, dims)
        loaded = self.load(config, dims)
        self.policy = loaded.policy
        self.directory = loaded.directory
        register_pretrained(self, "policy", loaded.record)
        pc = self.policy.config
        self.image_keys = self._image_keys(config.camera_map, list(pc.image_features))
        self._check_dims(pc)
        for feature, n in (("state", dims.state_dim), ("action", dims.action_dim)):
            for stat in STATS:
                neutral = {"std": 1.0, "q01": -1.0, "q99": 1.0, "min": -1.0, "max": 1.0}
                self.register_buffer(f"{feature}_{stat}", torch.full((n,), neutral.get(stat, 0.0)))
        self._pipes: tuple[Any, Any] | None = None
        # new statistics (a checkpoint's buffers) mean new LeRobot normalizer steps
        self.register_load_state_dict_post_hook(lambda m, _: m.__dict__.update(_pipes=None))

    @classmethod
    def contract_config(cls, workdir: Path | None = None, dims: Dims | None = None) -> Any:
        """A small random ACT policy saved under ``workdir`` (offline)."""
        import tempfile

        from sigma_lerobot.testing import save_small_act

        dims = dims or Dims()
        workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="sigma-act-"))
        key = f"act-{'-'.join(dims.cameras)}-{dims.image_size}-s{dims.state_dim}-a{dims.action_dim}"
        return LeRobotBaseConfig(path=str(save_small_act(workdir / key, dims)))

    # ---- what a specific policy family overrides -------------------------------------
    def load(self, config: Any, dims: Dims) -> LoadedPolicy:
        """The frozen policy, once per model build (see :func:`sigma_core.shared`)."""
        return shared(("sigma-lerobot", str(config.path)), lambda: load_policy(config.path))

    def make_pipelines(self, stats: dict[str, dict[str, Tensor]]) -> tuple[Any, Any]:
        """LeRobot's pre/post-processors for this policy, built from the data's ``stats``."""
        from lerobot.policies.factory import make_pre_post_processors

        return make_pre_post_processors(self.policy.config, dataset_stats=stats)

    def predict(self, inputs: dict[str, Any], batch_size: int, device: torch.device) -> Tensor:
        """The policy's action chunk (B, H, A') for pre-processed ``inputs``."""
        devices = [device] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.config.noise_seed)
            return self.policy.predict_action_chunk(self.with_history(inputs))

    def with_history(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """Add the observation-history axis a policy with ``n_obs_steps`` expects.

        Policies such as diffusion read (B, n_obs_steps, ...) state and images; a
        window gives the current observation, repeated over the history (exact for
        n_obs_steps = 1).
        """
        pc = self.policy.config
        if pc.observation_delta_indices is None:
            return inputs
        n = len(pc.observation_delta_indices)
        out = dict(inputs)
        for key in ("observation.state", *self.image_keys):
            x = inputs[key]
            base_ndim = 2 if key == "observation.state" else 4
            if x.ndim == base_ndim:
                out[key] = x.unsqueeze(1).expand(-1, n, *x.shape[1:])
        return out

    # ---- shared by every LeRobot base ----------------------------------------------
    def _check_dims(self, pc: Any) -> None:
        have_a = pc.output_features["action"].shape[0]
        state = pc.input_features.get("observation.state")
        have_s = state.shape[0] if state is not None else self.dims.state_dim
        want_a, want_s = self.dims.action_dim, self.dims.state_dim
        # a policy that pads (π0.5: 32 dims) serves any smaller size; others must match
        fits = (
            want_a <= have_a and want_s <= have_s
            if self.pads_dims
            else (want_a, want_s) == (have_a, have_s)
        )
        if not fits:
            raise SigmaUserError(
                f"base_policy {self.name} ({self.config.path}): the policy has action dim "
                f"{have_a} and state dim {have_s}; the spec's model.dims has "
                f"{want_a} and {want_s}"
            )

    def _image_keys(self, camera_map: Mapping[str, str], available: Sequence[str]) -> list[str]:
        unknown = set(camera_map) - set(self.dims.cameras)
        if unknown:
            raise SigmaUserError(
                f"base_policy.camera_map: {sorted(unknown)} not in model.dims.cameras"
            )
        keys = []
        for cam in self.dims.cameras:
            key = camera_map.get(cam, f"{IMAGE_PREFIX}{cam}")
            if key not in available:
                raise SigmaUserError(
                    f"base_policy.camera_map: camera {cam!r} -> {key!r} is not one of the "
                    f"policy's image inputs ({', '.join(available) or 'none'})"
                )
            keys.append(key)
        return keys

    def train(self, mode: bool = True) -> LeRobotBase:
        super().train(mode)
        self.policy.eval()  # frozen: no dropout, ever
        return self

    def set_data_stats(self, stats: Mapping[str, Mapping[str, Sequence[float]]]) -> None:
        """Keep the data's state/action statistics (meta.json ``stats``) in buffers."""
        for feature, key in FEATURES.items():
            n = getattr(self, f"{feature}_mean").numel()
            for stat in STATS:
                value = torch.as_tensor(stats[key][stat], dtype=torch.float32)[:n]
                getattr(self, f"{feature}_{stat}").copy_(value)
        self._pipes = None

    def pipelines(self) -> tuple[Any, Any]:
        """The policy directory's saved processors, else ones from the data statistics."""
        if self._pipes is None:
            if self.directory and (self.directory / "policy_preprocessor.json").is_file():
                self._pipes = self.saved_pipelines()
            else:
                stats = {
                    FEATURES[f]: {s: getattr(self, f"{f}_{s}").cpu() for s in STATS}
                    for f in FEATURES
                }
                self._pipes = self.make_pipelines(stats)
        return self._pipes

    def preprocessor_overrides(self) -> dict[str, Any]:
        """Step overrides when loading the directory's saved pre-processor."""
        return {"device_processor": {"device": "cpu"}}

    def saved_pipelines(self) -> tuple[Any, Any]:
        from lerobot.policies.factory import make_pre_post_processors

        return make_pre_post_processors(
            self.policy.config,
            pretrained_path=str(self.directory),
            preprocessor_overrides=self.preprocessor_overrides(),
        )

    def lerobot_batch(self, batch: SigmaBatch) -> dict[str, Any]:
        """The raw LeRobot observation of ``batch`` (dataset units, [0, 1] images, tasks)."""
        state = batch.state * self.state_std + self.state_mean
        obs: dict[str, Any] = {"observation.state": state, "task": list(batch.texts)}
        for i, key in enumerate(self.image_keys):
            obs[key] = batch.images[:, i, -1]  # the latest frame
        return obs

    @torch.no_grad()
    def chunk(self, batch: SigmaBatch) -> Tensor:
        """The policy's action chunk (B, H, A) in dataset units."""
        pre, post = self.pipelines()
        device = batch.state.device
        inputs = pre(self.lerobot_batch(batch))
        inputs = {k: v.to(device) if isinstance(v, Tensor) else v for k, v in inputs.items()}
        actions = self.predict(inputs, batch.batch_size, device)
        actions = post(actions).to(device)[..., : self.dims.action_dim]
        if actions.ndim == 2:  # a policy that predicts one action
            actions = actions[:, None]
        if actions.shape[1] < self.dims.horizon:
            raise SigmaUserError(
                f"base_policy {self.name} ({self.config.path}): its chunk has "
                f"{actions.shape[1]} actions, fewer than model.dims.horizon T = "
                f"{self.dims.horizon}"
            )
        return actions

    @torch.no_grad()
    def forward(self, batch: SigmaBatch) -> ActionSet:
        a = (self.chunk(batch) - self.action_mean) / self.action_std
        d = self.dims
        return ActionSet(a[:, 0], a[:, : d.chunk_horizon], a[:, : d.horizon])


def read_policy_config(directory: Path) -> Any:
    """``PreTrainedConfig.from_pretrained`` of a local LeRobot policy directory.

    LeRobot 0.6.1 writes the parsed config to a ``NamedTemporaryFile(delete=False)``
    and never removes it (one stray ``/tmp/tmp*.json`` per load); the load runs
    with :mod:`tempfile` pointed at a scratch directory that is removed afterwards.

    Raises:
        SigmaUserError: ``config.json`` is not a LeRobot policy config (naming the file).
    """
    import tempfile

    from lerobot.configs.policies import PreTrainedConfig

    previous = tempfile.tempdir
    try:
        with tempfile.TemporaryDirectory(prefix="sigma-lerobot-config-") as scratch:
            tempfile.tempdir = scratch
            try:
                return PreTrainedConfig.from_pretrained(str(directory), local_files_only=True)
            finally:
                tempfile.tempdir = previous
    except Exception as e:  # draccus/json errors: say which file
        if is_internal_error(e):
            raise
        raise SigmaUserError(
            f"{directory}/config.json: not a LeRobot policy config "
            f"({type(e).__name__}: {str(e).splitlines()[0][:200]})"
        ) from e


def load_policy(path: str) -> LoadedPolicy:
    """A LeRobot policy directory through LeRobot's factory, frozen, weights checked."""
    from lerobot.policies.factory import get_policy_class

    directory = local_directory(path, "base_policy.path")  # a path or a hub id
    if not (directory / "config.json").is_file():
        raise SigmaUserError(f"{directory}: not a LeRobot policy directory (no config.json)")
    config = read_policy_config(directory)
    try:
        cls = get_policy_class(config.type)
    except Exception as e:
        if is_internal_error(e):
            raise
        raise SigmaUserError(
            f"{directory}/config.json: not a LeRobot policy config "
            f"({type(e).__name__}: {str(e).splitlines()[0][:200]})"
        ) from e
    config.device = "cpu"
    policy = cls(config)
    problems = load_weights(policy, directory / "model.safetensors")
    if problems:
        raise SigmaUserError(
            f"{directory}: the {config.type} policy's weights did not load ({problems}); "
            "point base_policy.path at a complete LeRobot checkpoint (pretrained_model/)"
        )
    policy.requires_grad_(False).eval()
    return LoadedPolicy(policy, directory, source_record(str(path), local=directory))


def load_weights(
    policy: nn.Module, weights: Path, state: dict[str, Tensor] | None = None
) -> str | None:
    """Load ``weights`` (or ``state``) into ``policy``; what went wrong, or None.

    Missing, unexpected and mis-shaped tensors are all reported (first names), so a
    partial load never passes silently as LeRobot's own loaders can.
    """
    if state is None:
        if not weights.is_file():
            return f"no {weights.name}"
        from safetensors.torch import load_file

        state = load_file(str(weights))
    own = policy.state_dict()
    shapes = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    if shapes:
        return f"{len(shapes)} tensors of another shape: {', '.join(shapes[:3])}"
    result = policy.load_state_dict(state, strict=False)
    parts = []
    if result.missing_keys:
        parts.append(f"{len(result.missing_keys)} missing: {', '.join(result.missing_keys[:3])}")
    if result.unexpected_keys:
        n, first = len(result.unexpected_keys), ", ".join(result.unexpected_keys[:3])
        parts.append(f"{n} unexpected: {first}")
    return "; ".join(parts) or None
