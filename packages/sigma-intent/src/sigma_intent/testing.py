"""Test support: a tiny random Gemma saved on disk, for the contract kit and tests (offline).

Production modules import this only lazily (``HfBackbone.contract_config``); an
import-linter contract and a test check it.
"""

from __future__ import annotations

from typing import Any

import torch

from sigma_intent.backbones import tiny_gemma_config
from sigma_intent.config import TinyBackboneConfig


def save_tiny_model(config: TinyBackboneConfig | None = None) -> Any:
    """Save a random tiny Gemma + ByT5 tokenizer (once per process) and return its directory."""
    import tempfile
    from pathlib import Path

    from transformers import ByT5Tokenizer, GemmaModel

    config = config or TinyBackboneConfig(lora=None)
    key = config.model_dump_json()
    if key not in _SAVED:
        directory = Path(tempfile.mkdtemp(prefix="sigma-tiny-hf-"))
        tokenizer = ByT5Tokenizer()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            GemmaModel(tiny_gemma_config(config, tokenizer)).save_pretrained(directory)
        tokenizer.save_pretrained(directory)
        _SAVED[key] = directory
    return _SAVED[key]


_SAVED: dict[str, Any] = {}
