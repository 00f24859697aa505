"""Configs of the π0.5 components (pydantic only: the plugin imports them without torch)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt

from sigma_core import StrictModel
from sigma_intent.config import LoraSpec
from sigma_vision.config import ResamplerConfig

PALIGEMMA_TOKENIZER = "google/paligemma-3b-pt-224"


class Pi05Shrink(StrictModel):
    """LeRobot's π0.5 code at a reduced size (tests, CPU experiments; never real weights).

    LeRobot hard-codes the Gemma-2B / Gemma-300M / SigLIP So400m sizes; these
    replace them for both Gemma stacks and the SigLIP tower while every code
    path (prefix, KV cache, Euler denoiser, adaRMS expert) stays LeRobot's.
    """

    width: PositiveInt = 64
    depth: PositiveInt = 1
    num_heads: PositiveInt = 2
    head_dim: PositiveInt = 32
    mlp_dim: PositiveInt = 128
    vocab_size: PositiveInt = Field(512, description="token ids must stay below it")
    vision_width: PositiveInt = 32
    vision_depth: PositiveInt = 1
    vision_heads: PositiveInt = 2


class Pi05Source(StrictModel):
    """Which π0.5 to load. Components with equal sources share one loaded model."""

    path: str | None = Field(
        None,
        description="local π0.5 directory (config.json + model.safetensors, e.g. a download"
        " of lerobot/pi05_base) or a hub id; null: random init (needs allow_random_init)",
    )
    tokenizer: str = Field(
        PALIGEMMA_TOKENIZER, description="PaliGemma tokenizer: a local directory or hub id"
    )
    dtype: Literal["float32", "bfloat16"] = Field(
        "float32", description="π0.5's dtype (its vision tower and norms stay float32)"
    )
    allow_random_init: bool = Field(
        False,
        description="accept π0.5 weights that did not load (random init): cost measurements"
        " only, its actions mean nothing",
    )
    load_in_4bit: bool = Field(
        False,
        description="NF4-quantize π0.5's language model (bitsandbytes); LoRA trains on top."
        " Shared: the base policy's a_base then comes from the 4-bit model too",
    )
    shrink: Pi05Shrink | None = Field(None, description="reduced architecture (tests only)")
    image_resolution: PositiveInt | None = Field(
        None, description="random init only: π0.5's input side (default LeRobot's 224)"
    )


class Pi05BaseConfig(Pi05Source):
    """``base_policy: pi05``: a_base from π0.5's action chunk."""

    camera_map: dict[str, str] = Field(
        default_factory=dict,
        description="spec camera -> π0.5 image key (default observation.images.<camera>)",
    )
    noise_seed: int = Field(0, description="seed of the fixed denoiser noise (determinism)")
    num_steps: PositiveInt | None = Field(None, description="Euler steps (default π0.5's 10)")


class Pi05BackboneConfig(Pi05Source):
    """``backbone: pi05``: π0.5's PaliGemma language model over [text; vision; state]."""

    max_text_tokens: PositiveInt = Field(48, description="texts are truncated to this many")
    freeze_base: bool = Field(True, description="freeze the language model (LoRA trains)")
    lora: LoraSpec | None = Field(default_factory=LoraSpec, description="null: no LoRA")
    gradient_checkpointing: bool = False


class Pi05VisionConfig(ResamplerConfig, Pi05Source):
    """``vision: pi05-siglip``: π0.5's SigLIP tower, then the paper's resampler stack."""

    freeze_tower: bool = True
