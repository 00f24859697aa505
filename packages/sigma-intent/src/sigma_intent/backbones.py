"""Language backbones for the intent workspace (paper §2).

The backbone reads ``[text tokens; vision tokens; state tokens]``: text through
its own embedding table, prefix tokens (width D) through a trainable linear
projection into its width W. LoRA (peft) adapts q/k/v/o; the base stays frozen.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from sigma_core.components import Backbone
from sigma_core.spec import Dims
from sigma_core.types import BackboneOutput
from sigma_intent.config import LoraSpec, TinyBackboneConfig


def apply_lora(model: nn.Module, lora: LoraSpec | None, freeze_base: bool) -> nn.Module:
    """Freeze ``model`` (if asked) and wrap it with a peft LoRA adapter (if ``lora``)."""
    if freeze_base:
        model.requires_grad_(False)
    if lora is None:
        return model
    import peft

    config = peft.LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules),
    )
    wrapped = peft.get_peft_model(model, config)
    if not freeze_base:  # peft freezes the base; undo when full fine-tuning is asked for
        for name, p in wrapped.named_parameters():
            if "lora_" not in name:
                p.requires_grad_(True)
    return wrapped


class TinyBackbone(Backbone):
    """A small Gemma decoder built from a config with random weights + the ByT5 byte tokenizer.

    Runs fully offline; the CPU stand-in for pi0.5's Gemma. ``hidden = Gemma([E_text(ids);
    W_p prefix])`` with attention mask ``[text mask; 1]``.
    """

    name = "tiny"
    config_class = TinyBackboneConfig

    def __init__(self, config: TinyBackboneConfig, dims: Dims) -> None:
        super().__init__(config, dims)
        from transformers import ByT5Tokenizer, GemmaConfig, GemmaModel

        if config.hidden_size % config.num_heads:
            raise ValueError("backbone.num_heads must divide backbone.hidden_size")
        self.tokenizer = ByT5Tokenizer()
        gemma = GemmaConfig(
            vocab_size=len(self.tokenizer),
            hidden_size=config.hidden_size,
            intermediate_size=config.intermediate_size,
            num_hidden_layers=config.num_layers,
            num_attention_heads=config.num_heads,
            num_key_value_heads=config.num_kv_heads,
            head_dim=config.hidden_size // config.num_heads,
            pad_token_id=self.tokenizer.pad_token_id,
            max_position_embeddings=1024,
        )
        self.model = apply_lora(GemmaModel(gemma), config.lora, config.freeze_base)
        self.prefix_proj = nn.Linear(dims.d_model, config.hidden_size)

    @property
    def hidden_size(self) -> int:
        return self.config.hidden_size

    def tokenize(self, texts: list[str]) -> tuple[Tensor, Tensor]:
        enc = self.tokenizer(
            list(texts),
            padding=True,
            truncation=True,
            max_length=self.config.max_text_tokens,
            return_tensors="pt",
        )
        device = self.prefix_proj.weight.device
        return enc["input_ids"].to(device), enc["attention_mask"].to(device)

    def forward(self, input_ids: Tensor, attention_mask: Tensor, prefix: Tensor) -> BackboneOutput:
        text = self.model.get_input_embeddings()(input_ids)
        embeds = torch.cat([text, self.prefix_proj(prefix).to(text.dtype)], dim=1)
        ones = attention_mask.new_ones(prefix.shape[:2])
        mask = torch.cat([attention_mask, ones], dim=1)
        hidden = self.model(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
        return BackboneOutput(hidden=hidden, mask=mask)
