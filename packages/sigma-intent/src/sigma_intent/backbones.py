"""Language backbones for the intent workspace (paper §2).

The backbone reads ``[text tokens; vision tokens; state tokens]``: text through
its own embedding table, prefix tokens (width D) through a trainable linear
projection into its width W. LoRA (peft) adapts q/k/v/o; the base stays frozen.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import Tensor, nn

from sigma_core import (
    Backbone,
    BackboneOutput,
    Dims,
    SigmaUserError,
    is_internal_error,
    register_pretrained,
    source_record,
)
from sigma_intent.config import HfBackboneConfig, LoraSpec, TinyBackboneConfig

# peft imports bitsandbytes when installed; on CPU it logs that an optional kernel
# package is missing on every start. NF4 works without it.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)


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


#: Instruction tuples whose tokens :meth:`PrefixLM.tokenize` keeps.
TOKEN_CACHE = 256


class PrefixLM(Backbone, abstract=True):
    """A transformers decoder reading ``[E_text(ids); W_p prefix]`` (shared by tiny and hf).

    Subclasses set ``self.model`` (the base model, maybe peft-wrapped),
    ``self.tokenizer`` and ``self.prefix_proj`` (D -> W, trainable), and the
    config field ``max_text_tokens``.
    """

    model: nn.Module
    prefix_proj: nn.Linear

    @property
    def hidden_size(self) -> int:
        return self.prefix_proj.out_features

    def tokenize(self, texts: list[str]) -> tuple[Tensor, Tensor]:
        """(input_ids, attention_mask) of ``texts``, padded to the longest.

        Memoised per tuple of texts (at most :data:`TOKEN_CACHE` entries): a robot
        replans with the same instruction many times per episode, and tokenizing it
        again was a fifth of a tiny policy's replanning time.
        """
        key = tuple(texts)
        cache: dict[tuple[str, ...], tuple[Tensor, Tensor]] = self.__dict__.setdefault(
            "_token_cache", {}
        )
        if key not in cache:
            enc = self.tokenizer(
                list(texts),
                padding=True,
                truncation=True,
                max_length=self.config.max_text_tokens,
                return_tensors="pt",
            )
            if len(cache) >= TOKEN_CACHE:
                cache.clear()
            cache[key] = (enc["input_ids"], enc["attention_mask"])
        ids, mask = cache[key]
        device = self.prefix_proj.weight.device
        return ids.to(device, copy=True), mask.to(device, copy=True)

    def forward(self, input_ids: Tensor, attention_mask: Tensor, prefix: Tensor) -> BackboneOutput:
        text = self.model.get_input_embeddings()(input_ids)
        embeds = torch.cat([text, self.prefix_proj(prefix).to(text.dtype)], dim=1)
        ones = attention_mask.new_ones(prefix.shape[:2])
        mask = torch.cat([attention_mask, ones], dim=1)
        hidden = self.model(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
        return BackboneOutput(hidden=hidden.float(), mask=mask)


class TinyBackbone(PrefixLM):
    """A small Gemma decoder built from a config with random weights + the ByT5 byte tokenizer.

    Runs fully offline; the CPU stand-in for pi0.5's Gemma. ``hidden = Gemma([E_text(ids);
    W_p prefix])`` with attention mask ``[text mask; 1]``.
    """

    name = "tiny"
    config_class = TinyBackboneConfig

    def __init__(self, config: TinyBackboneConfig, dims: Dims) -> None:
        super().__init__(config, dims)
        from transformers import ByT5Tokenizer, GemmaModel

        if config.hidden_size % config.num_heads:
            raise ValueError("backbone.num_heads must divide backbone.hidden_size")
        self.tokenizer = ByT5Tokenizer()
        gemma = tiny_gemma_config(config, self.tokenizer)
        self.model = apply_lora(GemmaModel(gemma), config.lora, config.freeze_base)
        self.prefix_proj = nn.Linear(dims.d_model, config.hidden_size)


def tiny_gemma_config(config: TinyBackboneConfig, tokenizer: Any) -> Any:
    """The transformers ``GemmaConfig`` of a :class:`TinyBackboneConfig`."""
    from transformers import GemmaConfig

    return GemmaConfig(
        vocab_size=len(tokenizer),
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        num_key_value_heads=config.num_kv_heads,
        head_dim=config.hidden_size // config.num_heads,
        pad_token_id=tokenizer.pad_token_id,
        max_position_embeddings=1024,
    )


_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class HfBackbone(PrefixLM):
    """Any transformers model from a local directory (a hub id too, when online).

    ``AutoModel`` + ``AutoTokenizer`` from ``path``; ``trust_remote_code`` stays off
    unless the spec turns it on. ``load_in_4bit`` quantizes the frozen base to NF4
    through bitsandbytes (``BitsAndBytesConfig``, compute in ``dtype``) and
    prepares it for k-bit LoRA training with peft. The same
    ``hidden = LM([E_text(ids); W_p prefix])`` as ``tiny``.
    """

    name = "hf"
    config_class = HfBackboneConfig

    def __init__(self, config: HfBackboneConfig, dims: Dims) -> None:
        super().__init__(config, dims)
        model, self.tokenizer = load_hf(config)
        # non-reentrant checkpointing: works with frozen inputs and LoRA, and is torch's
        # recommended variant (the reentrant default is being removed)
        ckpt_kwargs = {"use_reentrant": False}
        if config.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=ckpt_kwargs)
        if config.load_in_4bit:
            import peft

            model = peft.prepare_model_for_kbit_training(
                model,
                use_gradient_checkpointing=config.gradient_checkpointing,
                gradient_checkpointing_kwargs=ckpt_kwargs,
            )
        self.model = apply_lora(model, config.lora, config.freeze_base)
        # The base weights come from config.path at every build: checkpoints keep only
        # what trains here (LoRA; everything when freeze_base is off) and the path's
        # sha256, never the frozen (maybe NF4-quantized) base again.
        trainable = [f"model.{n}" for n, p in self.model.named_parameters() if p.requires_grad]
        register_pretrained(self, "model", source_record(config.path, config.revision), trainable)
        width = getattr(model.config, "hidden_size", None) or model.config.text_config.hidden_size
        self.prefix_proj = nn.Linear(dims.d_model, width)

    @classmethod
    def contract_config(cls) -> HfBackboneConfig:
        """A tiny Gemma saved to a temporary directory, so the contract kit runs offline."""
        from sigma_intent.testing import save_tiny_model

        return HfBackboneConfig(path=str(save_tiny_model()))


def load_hf(config: HfBackboneConfig) -> tuple[nn.Module, Any]:
    """(base model, tokenizer) from ``config.path``, with clear errors."""
    from pathlib import Path

    from transformers import AutoModel, AutoTokenizer

    local = Path(config.path).expanduser()
    kwargs: dict[str, Any] = {
        "trust_remote_code": config.trust_remote_code,
        "revision": None if local.exists() else config.revision,
    }
    if local.exists():
        kwargs["local_files_only"] = True
    model_kwargs: dict[str, Any] = {"dtype": _DTYPES[config.dtype]}
    if config.load_in_4bit:
        try:
            import bitsandbytes  # noqa: F401
        except ImportError:
            raise SigmaUserError(
                "backbone.load_in_4bit needs bitsandbytes: pip install 'sigma-vla-intent[4bit]'"
            ) from None
        from transformers import BitsAndBytesConfig

        model_kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_compute_dtype=_DTYPES[config.dtype],
            bnb_4bit_use_double_quant=True,
        )
    source = str(local) if local.exists() else config.path
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **kwargs)
        model = AutoModel.from_pretrained(source, **kwargs, **model_kwargs)
    except Exception as e:
        if is_internal_error(e):
            raise
        where = "local directory" if local.exists() else "hub id (no such local directory)"
        raise SigmaUserError(
            f"backbone.path {config.path!r}: cannot load a transformers model from this {where}: "
            f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"
        ) from e
    return model, tokenizer
