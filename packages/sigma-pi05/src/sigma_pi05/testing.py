"""Test support: a shrunken π0.5 on disk for the contract kit and tests (offline, ~0.25 M
parameters), and the patches of LeRobot's builders that shrink it.

Production modules import this only lazily (``contract_config``, and
:func:`sigma_pi05.loading.architecture` when a source sets ``shrink``); an
import-linter contract and a test check it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sigma_core import Dims
from sigma_pi05.config import Pi05Shrink, Pi05Source
from sigma_pi05.loading import build_pi05, random_config


def contract_source(workdir: Path | None, dims: Dims | None) -> dict[str, Any]:
    """Source fields naming a shrunken π0.5 and a byte tokenizer saved under ``workdir``."""
    import tempfile

    from transformers import ByT5Tokenizer

    workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="sigma-pi05-"))
    dims = dims or Dims()
    shrink = Pi05Shrink()
    key = f"pi05-{'-'.join(dims.cameras)}-s{dims.state_dim}-a{dims.action_dim}"
    path, tokenizer = workdir / key, workdir / "byte-tokenizer"
    if not (path / "model.safetensors").is_file():
        save_shrunken_pi05(path, dims, shrink)
    if not tokenizer.is_dir():
        ByT5Tokenizer().save_pretrained(tokenizer)
    return {"path": str(path), "tokenizer": str(tokenizer), "shrink": shrink}


@contextmanager
def shrunken_architecture(shrink: Pi05Shrink) -> Iterator[None]:
    """Within: LeRobot builds π0.5 at ``shrink``'s sizes (builders patched, restored on exit)."""
    from unittest import mock

    from lerobot.policies.pi05 import modeling_pi05 as m

    gemma = m.GemmaConfig(
        width=shrink.width,
        depth=shrink.depth,
        mlp_dim=shrink.mlp_dim,
        num_heads=shrink.num_heads,
        num_kv_heads=1,
        head_dim=shrink.head_dim,
    )
    vlm_class, expert_class = m.PaliGemmaForConditionalGenerationWithPiGemma, m.PiGemmaForCausalLM

    def vlm(config: Any) -> nn.Module:
        vision = config.vision_config
        vision.hidden_size = shrink.vision_width
        vision.intermediate_size = 2 * shrink.vision_width
        vision.num_hidden_layers = shrink.vision_depth
        vision.num_attention_heads = shrink.vision_heads
        vision.projection_dim = shrink.width  # LeRobot hard-codes 2048
        config.text_config.vocab_size = shrink.vocab_size
        return vlm_class(config=config)

    def expert(config: Any) -> nn.Module:
        config.vocab_size = shrink.vocab_size
        return expert_class(config=config)

    with (
        mock.patch.object(m, "get_gemma_config", lambda variant: gemma),
        mock.patch.object(m, "PaliGemmaForConditionalGenerationWithPiGemma", vlm),
        mock.patch.object(m, "PiGemmaForCausalLM", expert),
    ):
        yield


def save_shrunken_pi05(
    directory: str | Path, dims: Dims, shrink: Pi05Shrink, seed: int = 0
) -> Path:
    """Save a random π0.5 at ``shrink``'s sizes as LeRobot saves policies (test fixtures)."""
    directory = Path(directory)
    source = Pi05Source(allow_random_init=True, shrink=shrink, image_resolution=56)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        with shrunken_architecture(shrink):
            policy = build_pi05(random_config(source, dims))
    policy.save_pretrained(directory)
    return directory
