"""Load π0.5 through LeRobot once per model build, and refuse weights that did not load.

LeRobot 0.6.1's ``PI05Policy.from_pretrained`` prints a warning and returns a
randomly initialised model when the weights cannot be read (offline hub, a
missing file, mismatched keys). :func:`load_pi05` builds the same
``PI05Policy`` from the directory's ``config.json``, loads ``model.safetensors``
through LeRobot's own key fixes, and fails with the path and the fix when any
tensor is missing, unexpected or of another shape, unless the spec says
``allow_random_init: true``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sigma_core import Dims, SigmaUserError, is_internal_error, shared, source_record
from sigma_lerobot.base import load_weights as check_and_load
from sigma_lerobot.base import read_policy_config
from sigma_lerobot.schema import lerobot_features
from sigma_pi05.config import Pi05Shrink, Pi05Source

log = logging.getLogger(__name__)


@dataclass
class Pi05:
    """One loaded π0.5: LeRobot's policy, its tokenizer, and where its weights came from."""

    policy: nn.Module  # lerobot.policies.pi05.PI05Policy, frozen, eval mode
    tokenizer: Any
    record: dict[str, Any]  # {source, revision, sha256}; source "random-init" when random
    directory: Path | None  # the local directory the weights came from

    @property
    def paligemma(self) -> nn.Module:
        return self.policy.model.paligemma_with_expert.paligemma

    @property
    def language_model(self) -> nn.Module:
        return self.paligemma.model.language_model

    @property
    def vision_tower(self) -> nn.Module:
        return self.paligemma.model.vision_tower


def shared_pi05(source: Pi05Source, dims: Dims) -> Pi05:
    """The π0.5 named by ``source``, loaded once per :func:`sigma_core.sharing` scope.

    Components whose source fields are equal (path, tokenizer, dtype,
    allow_random_init, shrink, image_resolution) get the same object, so the
    base policy, backbone and vision of one model hold a single π0.5.
    """
    key = ("sigma-pi05", source.model_dump_json(include=set(Pi05Source.model_fields)))
    return shared(key, lambda: load_pi05(source, dims))


def load_pi05(source: Pi05Source, dims: Dims) -> Pi05:
    """Build LeRobot's PI05Policy from ``source`` with its weights (see the module docstring)."""

    directory = resolve_directory(source)
    tokenizer = load_tokenizer(source.tokenizer)
    if directory is None:
        config = random_config(source, dims)
        with architecture(source.shrink):
            policy = build_pi05(config)
        record = {"source": "random-init", "revision": None, "sha256": None}
        log.warning("π0.5 at random init (allow_random_init): its actions mean nothing")
    else:
        config = read_policy_config(directory)
        if getattr(config, "type", None) != "pi05":
            raise SigmaUserError(
                f"{directory}: a LeRobot {getattr(config, 'type', '?')!r} policy, not pi05"
            )
        config.device = "cpu"
        config.dtype = source.dtype
        with architecture(source.shrink):
            policy = build_pi05(config)
        problems = load_weights(policy, directory)
        if problems and not source.allow_random_init:
            raise SigmaUserError(
                f"{directory}: π0.5 weights did not load ({problems}); LeRobot would go on "
                "with random weights. Point path at a complete π0.5 checkpoint (e.g. "
                "`hf download lerobot/pi05_base --local-dir models/pi05_base`), or set "
                "allow_random_init: true to measure costs with random weights."
            )
        record = source_record(str(directory))
        if problems:
            log.warning(
                "%s: %s; continuing at random init (allow_random_init)", directory, problems
            )
            record["sha256"] = None
    policy.requires_grad_(False).eval()
    # LeRobot's π0.5 switches its language model to eager attention inside every
    # forward (PI05Pytorch.sample_actions). The backbone pass shares that model: set
    # it at load, or a policy's first forward (sdpa) attends unlike all later ones.
    language_model = policy.model.paligemma_with_expert.paligemma.model.language_model
    language_model.config._attn_implementation = "eager"
    if source.load_in_4bit:
        compute = torch.bfloat16 if source.dtype == "bfloat16" else torch.float32
        quantize_nf4(language_model, compute)
    return Pi05(policy=policy, tokenizer=tokenizer, record=record, directory=directory)


def architecture(shrink: Pi05Shrink | None) -> AbstractContextManager[None]:
    """Within: LeRobot builds π0.5 at ``shrink``'s sizes; nothing changes when None.

    Shrinking patches LeRobot's builders, which is test support: it lives in
    :mod:`sigma_pi05.testing` and is imported only when a source asks for it.
    """
    if shrink is None:
        return nullcontext()
    from sigma_pi05.testing import shrunken_architecture

    return shrunken_architecture(shrink)


def quantize_nf4(module: nn.Module, compute_dtype: torch.dtype) -> int:
    """Replace every ``nn.Linear`` under ``module`` by a frozen NF4 ``bnb.nn.Linear4bit``.

    ``W`` is quantized blockwise to 4-bit NormalFloat with double quantization of
    the scales (QLoRA's recipe); matmuls run in ``compute_dtype``. Applied after
    the weights loaded, so the sha256 of the source still names what was
    quantized. Returns the number of layers replaced.
    """
    try:
        import bitsandbytes as bnb
    except ImportError:
        raise SigmaUserError(
            "pi05 load_in_4bit needs bitsandbytes: pip install 'sigma-vla-intent[4bit]'"
        ) from None
    count = 0
    for name, child in list(module.named_children()):
        if isinstance(child, nn.Linear):
            device = child.weight.device
            q = bnb.nn.Linear4bit(
                child.in_features,
                child.out_features,
                bias=child.bias is not None,
                compute_dtype=compute_dtype,
                compress_statistics=True,
                quant_type="nf4",
                device="meta",
            )
            q.weight = bnb.nn.Params4bit(
                child.weight.data.to("cpu", torch.float32),
                requires_grad=False,
                compress_statistics=True,
                quant_type="nf4",
            )
            if child.bias is not None:
                q.bias = nn.Parameter(child.bias.data, requires_grad=False)
            setattr(module, name, q.to(device))  # .to() quantizes
            count += 1
        else:
            count += quantize_nf4(child, compute_dtype)
    return count


def build_pi05(config: Any) -> nn.Module:
    """LeRobot's ``PI05Policy`` from a config (weights as initialised; see :func:`load_pi05`)."""
    from lerobot.policies.pi05.modeling_pi05 import PI05Policy

    return PI05Policy(config)


def resolve_directory(source: Pi05Source) -> Path | None:
    """The local directory holding π0.5's weights: ``path``, a hub download, or None (random)."""
    if source.path is None:
        if not source.allow_random_init:
            raise SigmaUserError(
                "pi05: path is required (a local π0.5 directory, e.g. a download of "
                "lerobot/pi05_base); allow_random_init: true builds a random π0.5 instead"
            )
        return None
    local = Path(source.path).expanduser()
    if local.exists():
        if not (local / "config.json").is_file():
            raise SigmaUserError(f"{local}: not a LeRobot policy directory (no config.json)")
        return local
    try:
        from huggingface_hub import snapshot_download

        return Path(
            snapshot_download(source.path, allow_patterns=["*.json", "*.safetensors", "*.md"])
        )
    except Exception as e:
        if is_internal_error(e):
            raise
        raise SigmaUserError(
            f"pi05 path {source.path!r}: no such local directory, and no hub download "
            f"({type(e).__name__}). Download pi0.5 where the hub is reachable, e.g. "
            f"`hf download lerobot/pi05_base --local-dir {source.path}`"
        ) from e


def load_weights(policy: nn.Module, directory: Path) -> str | None:
    """Load ``directory/model.safetensors`` through LeRobot's π0.5 key fixes; what went wrong."""
    from safetensors.torch import load_file

    weights = directory / "model.safetensors"
    if not weights.is_file():
        return "no model.safetensors"
    # LeRobot's key fixes log a root-logger warning for every patch-embedding key
    previous = logging.root.manager.disable
    logging.disable(max(previous, logging.WARNING))
    try:
        state = policy._fix_pytorch_state_dict_keys(load_file(str(weights)), policy.config)
    finally:
        logging.disable(previous)  # the caller's own setting, not NOTSET
    state = {k if k.startswith("model.") else f"model.{k}": v for k, v in state.items()}
    return check_and_load(policy, weights, state)


def load_tokenizer(name: str) -> Any:
    """The PaliGemma tokenizer from a local directory or the hub, with a clear error."""
    from transformers import AutoTokenizer

    local = Path(name).expanduser()
    try:
        return AutoTokenizer.from_pretrained(str(local) if local.exists() else name)
    except Exception as e:
        if is_internal_error(e):
            raise
        raise SigmaUserError(
            f"pi05 tokenizer {name!r}: cannot load it ({type(e).__name__}); π0.5 uses the "
            "PaliGemma tokenizer: download google/paligemma-3b-pt-224 where the hub is "
            "reachable and set tokenizer to its local directory"
        ) from e


def random_config(source: Pi05Source, dims: Dims) -> Any:
    """A PI05Config for ``dims`` (cameras, state, actions) when there is no directory."""
    from lerobot.policies.pi05.configuration_pi05 import PI05Config

    side = source.image_resolution or 224
    inputs, outputs = lerobot_features(dims, side)
    return PI05Config(
        input_features=inputs,
        output_features=outputs,
        device="cpu",
        dtype=source.dtype,
        image_resolution=(side, side),
    )


@contextmanager
def adapters_disabled(module: nn.Module) -> Iterator[None]:
    """Within: peft adapters injected anywhere in ``module`` are bypassed.

    The backbone's LoRA is injected into the shared π0.5 language model; the base
    policy must act with the frozen weights only. peft's own switch
    (``enable_adapters``) also flips ``requires_grad`` of the adapters, which would
    undo a training stage's freezing, so the flag is toggled directly.
    """
    from peft.tuners.tuners_utils import BaseTunerLayer

    layers = [m for m in module.modules() if isinstance(m, BaseTunerLayer)]
    before = [m._disable_adapters for m in layers]
    for m in layers:
        m._disable_adapters = True
    try:
        yield
    finally:
        for m, was in zip(layers, before, strict=True):
            m._disable_adapters = was
