"""Shared blocks: the reassociated few-query attention equals MultiheadAttention."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sigma_core.layers import CrossAttentionBlock, attend


@settings(max_examples=25, deadline=None)
@given(
    lq=st.integers(1, 6),
    lk=st.integers(1, 80),
    heads=st.sampled_from([1, 2, 4]),
    padded=st.integers(0, 3),
    bias=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_attend_equals_multihead_attention(lq, lk, heads, padded, bias, seed):
    torch.manual_seed(seed)
    d = 16
    attn = torch.nn.MultiheadAttention(d, heads, bias=bias, batch_first=True)
    if bias:  # non-zero biases, so dropping b_k and passing b_v through are both exercised
        torch.nn.init.normal_(attn.in_proj_bias)
    q, kv = torch.randn(2, lq, d, requires_grad=True), torch.randn(2, lk, d)
    pad = torch.zeros(2, lk, dtype=torch.bool)
    pad[1, lk - min(padded, lk - 1) :] = True  # never a fully masked row
    want = attn(q, kv, kv, key_padding_mask=pad, need_weights=False)[0]
    got = attend(attn, q, kv, pad)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    (g_want,) = torch.autograd.grad(want.square().sum(), q)
    (g_got,) = torch.autograd.grad(got.square().sum(), q)
    torch.testing.assert_close(g_got, g_want, rtol=1e-4, atol=1e-5)


def test_the_reassociated_path_runs_where_it_is_cheaper():
    """8 queries over 456 tokens at D = 64 take the reassociated path (no K/V projection)."""
    block = CrossAttentionBlock(64, 4).eval()
    calls = []
    block.attn.register_forward_pre_hook(lambda *a: calls.append(1))
    x, ctx = torch.randn(1, 8, 64), torch.randn(1, 456, 64)
    block(x, ctx)
    assert not calls  # MultiheadAttention.forward was not called
    block(torch.randn(1, 200, 64), torch.randn(1, 10, 64))
    assert calls  # many queries over a short context: the standard path
