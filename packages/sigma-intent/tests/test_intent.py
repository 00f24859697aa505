"""Values of the intent workspace: memory formula, LoRA wiring, modulator identity."""

from __future__ import annotations

import torch

from sigma_core import Dims
from sigma_intent.backbones import TinyBackbone
from sigma_intent.config import (
    EmaMemoryConfig,
    GatedMemoryConfig,
    SigmaIntentConfig,
    TinyBackboneConfig,
)
from sigma_intent.intent import LanguageModulator, SigmaIntent
from sigma_intent.memory import EmaMemory, GatedMemory

DIMS = Dims(d_model=16)


def test_gated_memory_equals_hand_computation():
    torch.manual_seed(0)
    mem = GatedMemory(GatedMemoryConfig(), DIMS)
    z, m = torch.randn(3, 16), torch.randn(3, 16)
    w_u, b_u = mem.w_u.weight, mem.w_u.bias
    w_l, b_l = mem.w_lambda.weight, mem.w_lambda.bias
    u = torch.nn.functional.gelu(z @ w_u.T + b_u)
    lam = 1 / (1 + torch.exp(-(torch.cat([m, z], -1) @ w_l.T + b_l)))
    torch.testing.assert_close(mem(z, m), lam * m + (1 - lam) * u)


def test_ema_memory():
    mem = EmaMemory(EmaMemoryConfig(decay=0.25), DIMS)
    z, m = torch.ones(1, 16), torch.zeros(1, 16)
    torch.testing.assert_close(mem(z, m), torch.full((1, 16), 0.75))


def test_language_modulator_is_identity_at_tau_zero():
    mod = LanguageModulator(16, 0.0)
    h = torch.randn(2, 16)
    torch.testing.assert_close(mod(h, torch.zeros(2, 16)), h)


def test_tiny_backbone_trains_only_lora_and_prefix_projection():
    torch.manual_seed(0)
    bb = TinyBackbone(TinyBackboneConfig(hidden_size=32, num_heads=2), DIMS)
    trainable = [n for n, p in bb.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n or n.startswith("prefix_proj") for n in trainable)
    targets = {n.split(".")[-4] for n in trainable if "lora_A" in n}
    assert targets == {"q_proj", "k_proj", "v_proj", "o_proj"}
    ids, mask = bb.tokenize(["pick the red cube", "go"])
    out = bb(ids, mask, torch.randn(2, 5, 16))
    assert out.hidden.shape == (2, ids.shape[1] + 5, 32)
    assert out.mask[:, -5:].all()


def test_backbone_without_lora_is_fully_frozen_except_projection():
    bb = TinyBackbone(TinyBackboneConfig(hidden_size=32, num_heads=2, lora=None), DIMS)
    assert [n for n, p in bb.named_parameters() if p.requires_grad] == [
        "prefix_proj.weight",
        "prefix_proj.bias",
    ]


def test_intent_ignores_padding():
    torch.manual_seed(0)
    intent = SigmaIntent(SigmaIntentConfig(num_factors=4), DIMS, backbone_width=24).eval()
    hidden = torch.randn(1, 6, 24)
    mask = torch.tensor([[1, 1, 1, 1, 0, 0]])
    changed = hidden.clone()
    changed[:, 4:] = 100.0  # only padded positions change
    mem = GatedMemory(GatedMemoryConfig(), DIMS)
    m0 = torch.zeros(1, 16)
    a, b = intent(hidden, mask, m0, mem), intent(changed, mask, m0, mem)
    torch.testing.assert_close(a.tau, b.tau)


def test_tokenize_memoises_instructions_without_sharing_tensors():
    from sigma_core import Dims
    from sigma_intent.backbones import TOKEN_CACHE, TinyBackbone
    from sigma_intent.config import TinyBackboneConfig

    bb = TinyBackbone(TinyBackboneConfig(), Dims(d_model=32))
    texts = ["pick up the red cube", "go"]
    ids, mask = bb.tokenize(texts)
    want = bb.tokenizer(texts, padding=True, return_tensors="pt")
    assert torch.equal(ids, want["input_ids"]) and torch.equal(mask, want["attention_mask"])
    ids.zero_()  # a caller's in-place change must not reach the next call
    assert torch.equal(bb.tokenize(texts)[0], want["input_ids"])
    for i in range(TOKEN_CACHE + 3):
        bb.tokenize([f"task {i}"])
    assert len(bb._token_cache) <= TOKEN_CACHE
