"""The `hf` backbone: any local transformers model, trust_remote_code off, LoRA, NF4."""

from __future__ import annotations

import json

import pytest
import torch

from sigma_core import Dims, SigmaUserError
from sigma_intent.backbones import HfBackbone, TinyBackbone
from sigma_intent.config import HfBackboneConfig, TinyBackboneConfig
from sigma_intent.testing import save_tiny_model

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


@pytest.mark.parametrize("load_in_4bit", [False, True], ids=["bf16-base", "nf4-base"])
def test_a_policy_on_a_pretrained_base_saves_only_what_trains_and_reloads_exactly(
    tmp_path, load_in_4bit
):
    """The checkpoint holds LoRA + heads, references the base by sha256, reloads to equal actions.

    With NF4 the saved state used to carry bitsandbytes quant-state keys
    (weight.absmax, quant_map, ...) that a strict load rejected.
    """
    if load_in_4bit:
        pytest.importorskip("bitsandbytes")
    from safetensors import safe_open

    from sigma_core import SigmaPolicy, get_registry, validate_spec
    from sigma_core.testing import CONTRACT_DIMS, example_batch, planned_actions

    base = save_tiny_model()
    backbone = {"type": "hf", "path": str(base), "load_in_4bit": load_in_4bit}
    raw = {"model": {"dims": CONTRACT_DIMS.model_dump(), "backbone": backbone}}
    policy = SigmaPolicy(validate_spec(raw, get_registry())).eval()
    policy.save_pretrained(tmp_path / "ckpt")
    with safe_open(str(tmp_path / "ckpt" / "model.safetensors"), "pt") as f:
        saved = set(f.keys())
    backbone_keys = {k for k in saved if k.startswith("backbone.model.")}
    assert backbone_keys and all("lora_" in k for k in backbone_keys)
    assert "backbone.prefix_proj.weight" in saved
    meta = json.loads((tmp_path / "ckpt" / "sigma.json").read_text())
    record = meta["pretrained"]["backbone.model"]
    assert record["source"] == str(base) and len(record["sha256"]) == 64

    restored = SigmaPolicy.from_pretrained(tmp_path / "ckpt").eval()
    batch = example_batch(CONTRACT_DIMS, batch_size=2)
    assert torch.equal(planned_actions(policy, batch), planned_actions(restored, batch))


def test_a_checkpoint_refuses_other_base_weights(tmp_path):
    from sigma_core import SigmaPolicy, get_registry, validate_spec
    from sigma_core.testing import CONTRACT_DIMS

    base = tmp_path / "base"
    torch.manual_seed(0)
    tiny = TinyBackbone(TinyBackboneConfig(lora=None), DIMS)
    tiny.model.save_pretrained(base)
    tiny.tokenizer.save_pretrained(base)
    raw = {
        "model": {"dims": CONTRACT_DIMS.model_dump(), "backbone": {"type": "hf", "path": str(base)}}
    }
    SigmaPolicy(validate_spec(raw, get_registry())).save_pretrained(tmp_path / "ckpt")
    torch.manual_seed(1)
    TinyBackbone(TinyBackboneConfig(lora=None), DIMS).model.save_pretrained(base)
    with pytest.raises(SigmaUserError, match=r"backbone\.model: .*base has sha256 .* trained on"):
        SigmaPolicy.from_pretrained(tmp_path / "ckpt")
    SigmaPolicy.from_pretrained(tmp_path / "ckpt", strict_versions=False)  # the escape hatch
