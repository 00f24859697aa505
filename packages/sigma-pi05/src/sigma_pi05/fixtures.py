"""A shrunken π0.5 on disk for the contract kit and tests (offline, ~0.25 M parameters)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sigma_core import Dims
from sigma_pi05.config import Pi05Shrink


def contract_source(workdir: Path | None, dims: Dims | None) -> dict[str, Any]:
    """Source fields naming a shrunken π0.5 and a byte tokenizer saved under ``workdir``."""
    import tempfile

    from transformers import ByT5Tokenizer

    from sigma_pi05.loading import save_shrunken_pi05

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
