"""The `hf` backbone: any local transformers model, trust_remote_code off, LoRA, NF4."""

from __future__ import annotations

import json

import pytest
import torch

from sigma_core import Dims, SigmaUserError
from sigma_intent.backbones import HfBackbone, TinyBackbone, save_tiny_model
from sigma_intent.config import HfBackboneConfig, TinyBackboneConfig

DIMS = Dims(d_model=32)


def test_hf_from_a_local_directory_equals_the_same_weights_in_tiny(tmp_path):
    torch.manual_seed(0)
    tiny = TinyBackbone(TinyBackboneConfig(lora=None), DIMS).eval()
    tiny.model.save_pretrained(tmp_path)
    tiny.tokenizer.save_pretrained(tmp_path)
    hf = HfBackbone(HfBackboneConfig(path=str(tmp_path), lora=None), DIMS).eval()
    hf.prefix_proj.load_state_dict(tiny.prefix_proj.state_dict())
    ids, mask = hf.tokenize(["pick up the red cube", "go"])
    assert torch.equal(ids, tiny.tokenize(["pick up the red cube", "go"])[0])
    prefix = torch.randn(2, 5, 32)
    with torch.no_grad():
        torch.testing.assert_close(hf(ids, mask, prefix).hidden, tiny(ids, mask, prefix).hidden)
    assert hf.hidden_size == 128


def test_lora_trains_only_adapters_and_projection():
    hf = HfBackbone(HfBackboneConfig(path=str(save_tiny_model())), DIMS)
    trainable = {n for n, p in hf.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or n.startswith("prefix_proj") for n in trainable)
    targets = {n.split(".lora_A")[0].rsplit(".", 1)[-1] for n in trainable if "lora_A" in n}
    assert targets == {"q_proj", "k_proj", "v_proj", "o_proj"}


def test_remote_code_is_never_run_by_default(tmp_path):
    marker = tmp_path / "ran"
    (tmp_path / "modeling_evil.py").write_text(f"open({str(marker)!r}, 'w').write('x')\n")
    config = {
        "model_type": "evil-custom",
        "auto_map": {"AutoConfig": "modeling_evil.C", "AutoModel": "modeling_evil.M"},
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(SigmaUserError, match="cannot load a transformers model from this local"):
        HfBackbone(HfBackboneConfig(path=str(tmp_path)), DIMS)
    assert not marker.exists()


def test_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(SigmaUserError, match=r"backbone.path .*nope.*hub id \(no such local"):
        HfBackbone(HfBackboneConfig(path=str(tmp_path / "nope")), DIMS)


def test_nf4_base_with_lora_runs_forward_and_backward_on_cpu():
    pytest.importorskip("bitsandbytes")
    import bitsandbytes as bnb

    hf = HfBackbone(HfBackboneConfig(path=str(save_tiny_model()), load_in_4bit=True), DIMS)
    quantized = [m for m in hf.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert quantized and all(m.weight.quant_type == "nf4" for m in quantized)
    ids, mask = hf.tokenize(["pick up the red cube"])
    out = hf(ids, mask, torch.randn(1, 5, 32))
    out.hidden.pow(2).mean().backward()
    grads = [p.grad for n, p in hf.named_parameters() if "lora_B" in n]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
