"""``backbone: pi05``: π0.5's PaliGemma language model as Sigma's language backbone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from sigma_core import Dims, register_pretrained
from sigma_intent.backbones import PrefixLM, apply_lora
from sigma_pi05.config import Pi05BackboneConfig
from sigma_pi05.loading import shared_pi05


class Pi05Backbone(PrefixLM):
    """``hidden = Gemma_π0.5([E_text(ids); W_p [V_base; S_tok]])`` with π0.5's own weights.

    The language model and its text embedding table are π0.5's (shared with the
    ``pi05`` base policy and vision when their sources are equal: one copy in
    memory), read through the PaliGemma tokenizer. LoRA (peft, paper: r = 16 on
    q/k/v/o) is injected into that shared model; the base policy bypasses it.
    The projection W_p (D -> 2048) and LoRA train; checkpoints keep only them and
    reference π0.5 by path and sha256.
    """

    name = "pi05"
    config_class = Pi05BackboneConfig

    def __init__(self, config: Pi05BackboneConfig, dims: Dims) -> None:
        super().__init__(config, dims)
        loaded = shared_pi05(config, dims)
        self.tokenizer = loaded.tokenizer
        model = loaded.language_model
        if config.gradient_checkpointing:
            model.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs={"use_reentrant": False}
            )
        self.model = apply_lora(model, config.lora, config.freeze_base)
        trainable = [f"model.{n}" for n, p in self.model.named_parameters() if p.requires_grad]
        register_pretrained(self, "model", loaded.record, trainable)
        self.prefix_proj = nn.Linear(dims.d_model, model.config.hidden_size)

    @classmethod
    def contract_config(cls, workdir: Path | None = None, dims: Dims | None = None) -> Any:
        """A shrunken π0.5 saved under ``workdir`` (offline)."""
        from sigma_pi05.testing import contract_source

        return Pi05BackboneConfig(**contract_source(workdir, dims))
