"""Pretrained weights: shared once per build, left out of checkpoints, fingerprinted."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sigma_core import (
    register_pretrained,
    shared,
    sharing,
    source_record,
    weights_fingerprint,
)


def test_shared_builds_once_per_scope_and_never_outside():
    calls = []

    def make():
        calls.append(1)
        return nn.Linear(2, 2)

    assert shared("k", make) is not shared("k", make)  # no scope: no sharing
    with sharing():
        a = shared("k", make)
        with sharing():  # a nested scope is the same pool
            assert shared("k", make) is a
        assert shared("other", make) is not a
    with sharing():
        assert shared("k", make) is not a  # a new scope starts empty
    assert len(calls) == 5


class Owner(nn.Module):
    def __init__(self, base: nn.Module) -> None:
        super().__init__()
        self.base = base
        self.head = nn.Linear(4, 2)
        self.base.requires_grad_(False)
        self.base.adapter = nn.Linear(4, 4)  # stands in for LoRA injected into the base
        keep = [f"base.{n}" for n, p in self.base.named_parameters() if p.requires_grad]
        register_pretrained(self, "base", {"source": "somewhere", "sha256": None}, keep)


def test_pretrained_tensors_are_not_saved_and_not_missing_on_load():
    owner = Owner(nn.Linear(4, 4))
    owner.base.register_buffer("quant_state", torch.ones(3))
    assert sorted(owner.state_dict()) == [
        "base.adapter.bias",
        "base.adapter.weight",
        "head.bias",
        "head.weight",
    ]
    wrapped = nn.Sequential(owner)  # prefixes work at any depth
    state = {k: v.clone() + 1 for k, v in wrapped.state_dict().items()}
    frozen = owner.base.weight.clone()
    result = wrapped.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert torch.equal(owner.base.weight, frozen)  # the build's weights stay
    assert torch.equal(owner.head.weight, state["0.head.weight"])
    assert owner.pretrained_sources == {"base": {"source": "somewhere", "sha256": None}}


def test_a_load_still_reports_missing_trained_tensors():
    owner = Owner(nn.Linear(4, 4))
    state = owner.state_dict()
    del state["base.adapter.weight"]
    with pytest.raises(RuntimeError, match=r"Missing key\(s\).*base\.adapter\.weight"):
        owner.load_state_dict(state, strict=True)


def test_fingerprint_changes_with_any_weight_file_and_ignores_others(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"abc")
    (tmp_path / "config.json").write_text("{}")
    first = weights_fingerprint(tmp_path)
    (tmp_path / "config.json").write_text('{"x": 1}')
    assert weights_fingerprint(tmp_path) == first
    (tmp_path / "model.safetensors").write_bytes(b"abd")
    assert weights_fingerprint(tmp_path) != first
    assert weights_fingerprint(tmp_path / "absent") is None
    assert source_record("org/hub-id", "main") == {
        "source": "org/hub-id",
        "revision": "main",
        "sha256": None,
    }
