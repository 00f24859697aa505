"""Configs of the intent-workspace components (pydantic only: no torch, no transformers)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt

from sigma_core import StrictModel


class LoraSpec(StrictModel):
    """LoRA on the backbone's attention projections (paper: r=16 on q/k/v/o, with dropout)."""

    r: PositiveInt = 16
    alpha: float = Field(32.0, gt=0)
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"], min_length=1
    )


class TinyBackboneConfig(StrictModel):
    """A small transformers Gemma decoder built from a config (random init) + byte tokenizer."""

    hidden_size: PositiveInt = Field(128, description="W")
    num_layers: PositiveInt = 2
    num_heads: PositiveInt = 4
    num_kv_heads: PositiveInt = 1
    intermediate_size: PositiveInt = 256
    max_text_tokens: PositiveInt = Field(64, description="texts are truncated to this many bytes")
    freeze_base: bool = Field(True, description="freeze the backbone weights (LoRA trains)")
    lora: LoraSpec | None = Field(default_factory=LoraSpec, description="null: no LoRA")


class HfBackboneConfig(StrictModel):
    """Any transformers model from a local directory (or a hub id when online)."""

    path: str = Field(description="directory with config.json, weights and tokenizer")
    revision: str | None = Field(None, description="hub revision (ignored for a local path)")
    trust_remote_code: bool = Field(
        False, description="run the model repository's own code (off: only transformers' code)"
    )
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    load_in_4bit: bool = Field(False, description="NF4 base weights via bitsandbytes (extra 4bit)")
    gradient_checkpointing: bool = False
    max_text_tokens: PositiveInt = Field(64, description="texts are truncated to this many tokens")
    freeze_base: bool = Field(True, description="freeze the backbone weights (LoRA trains)")
    lora: LoraSpec | None = Field(default_factory=LoraSpec, description="null: no LoRA")


class GatedMemoryConfig(StrictModel):
    """Gated semantic memory (no parameters besides d_model)."""


class NoMemoryConfig(StrictModel):
    """Memoryless: m_t = z_pool."""


class EmaMemoryConfig(StrictModel):
    """Fixed-rate exponential moving average."""

    decay: float = Field(0.9, ge=0, le=1, description="lambda, the weight on m_{t-1}")


class SigmaIntentConfig(StrictModel):
    """Semantic factor head, summary heads, intent head, telepathy projector, modulator."""

    num_factors: PositiveInt = Field(8, description="K semantic factor queries")
    num_heads: PositiveInt = 4
    dropout: float = Field(0.0, ge=0, lt=1)
    theta_lang_init: float = Field(0.0, description="initial log-scale gate of the modulator")
