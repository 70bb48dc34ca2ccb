"""Attention layers against a hand-written reference, mask handling, and AttentionPool invariances."""

import math

import pytest
import torch

from fusion.models.attention import Attention, AttentionPool, Block, CrossBlock

DIM, HEADS = 16, 4


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def reference_attention(attn: Attention, x, context, key_mask):
    """softmax(Q K^T / sqrt(d_head)) V per head and per sample, by loops; masked keys excluded; a sample with
    no valid key gives zero output and zero weights."""
    B, Nq, D = x.shape
    Nk = context.shape[1]
    hd = D // attn.num_heads
    q = x @ attn.q.weight.T + attn.q.bias
    k = context @ attn.kv.weight[:D].T + attn.kv.bias[:D]
    v = context @ attn.kv.weight[D:].T + attn.kv.bias[D:]
    out = torch.zeros(B, Nq, D)
    weights = torch.zeros(B, attn.num_heads, Nq, Nk)
    for b in range(B):
        valid = key_mask[b] if key_mask is not None else torch.ones(Nk, dtype=torch.bool)
        if not valid.any():
            continue
        heads = []
        for h in range(attn.num_heads):
            sl = slice(h * hd, (h + 1) * hd)
            scores = q[b, :, sl] @ k[b, valid, sl].T / math.sqrt(hd)
            w = torch.softmax(scores, dim=-1)
            weights[b, h][:, valid] = w
            heads.append(w @ v[b, valid, sl])
        out[b] = torch.cat(heads, dim=-1) @ attn.proj.weight.T + attn.proj.bias
    return out, weights


def make_mask(B, N):
    mask = torch.rand(B, N) > 0.4
    mask[0] = True  # all valid
    mask[1] = False  # fully masked
    mask[2, 0] = True
    return mask


@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("cross", [False, True])
@pytest.mark.parametrize("masked", [False, True])
def test_attention_matches_reference(fused, cross, masked):
    B, Nq, Nk = 4, 5, 7 if cross else 5
    attn = Attention(DIM, HEADS, fused=fused).eval()
    x = torch.randn(B, Nq, DIM)
    context = torch.randn(B, Nk, DIM) if cross else None
    mask = make_mask(B, Nk) if masked else None
    out = attn(x, context=context, key_mask=mask)
    ref, _ = reference_attention(attn, x, x if context is None else context, mask)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("cross", [False, True])
def test_fused_equals_plain_and_weights(cross):
    B, Nq, Nk = 4, 6, 9 if cross else 6
    attn = Attention(DIM, HEADS).eval()
    x = torch.randn(B, Nq, DIM)
    context = torch.randn(B, Nk, DIM) if cross else x
    mask = make_mask(B, Nk)
    fused = attn(x, context, key_mask=mask)
    plain, weights = attn(x, context, key_mask=mask, return_weights=True)
    torch.testing.assert_close(fused, plain, atol=1e-5, rtol=1e-4)
    assert weights.shape == (B, HEADS, Nq, Nk)
    _, ref_w = reference_attention(attn, x, context, mask)
    torch.testing.assert_close(weights, ref_w, atol=1e-5, rtol=1e-4)
    has_key = mask.any(-1)
    sums = weights.sum(-1)
    torch.testing.assert_close(sums[has_key], torch.ones_like(sums[has_key]))
    assert (sums[~has_key] == 0).all()
    assert (weights.masked_select(~mask[:, None, None, :].expand_as(weights)) == 0).all()


@pytest.mark.parametrize("fused", [True, False])
def test_fully_masked_rows_are_zero_with_finite_grads(fused):
    attn = Attention(DIM, HEADS, fused=fused)
    x = torch.randn(3, 4, DIM, requires_grad=True)
    context = torch.randn(3, 5, DIM, requires_grad=True)
    mask = torch.zeros(3, 5, dtype=torch.bool)
    mask[0, :2] = True
    out = attn(x, context, key_mask=mask)
    assert torch.isfinite(out).all()
    assert (out[1:] == 0).all()
    out.pow(2).sum().backward()
    for t in [x, context, *attn.parameters()]:
        assert torch.isfinite(t.grad).all()
    assert (context.grad[0, 2:] == 0).all() and (context.grad[1:] == 0).all()


def test_all_samples_fully_masked():
    attn = Attention(DIM, HEADS)
    x = torch.randn(2, 3, DIM, requires_grad=True)
    out, w = attn(x, key_mask=torch.zeros(2, 3, dtype=torch.bool), return_weights=True)
    assert (out == 0).all() and (w == 0).all()
    out.sum().backward()
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("fused", [True, False])
def test_blocks_ignore_masked_tokens(fused):
    block = Block(DIM, HEADS, mlp_ratio=2, fused=fused).eval()
    cross = CrossBlock(DIM, HEADS, mlp_ratio=2, fused=fused).eval()
    x = torch.randn(2, 5, DIM)
    mask = torch.tensor([[1, 1, 1, 0, 0], [0, 0, 0, 0, 0]], dtype=torch.bool)
    x2 = torch.where(mask[..., None], x, torch.randn_like(x) * 100)
    out, out2 = block(x, mask), block(x2, mask)
    torch.testing.assert_close(out[0, :3], out2[0, :3])
    target = torch.randn(2, 3, DIM)
    y, w = cross(target, x, mask, return_weights=True)
    y2 = cross(target, x2, mask)
    torch.testing.assert_close(y, y2)
    assert w.shape == (2, HEADS, 3, 5)
    # No valid source key: the attention term vanishes and only the target's MLP residual path remains.
    torch.testing.assert_close(y[1], target[1] + cross.mlp(cross.norm2(target[1])))


def test_attention_pool_permutation_invariant():
    pool = AttentionPool(DIM, HEADS, mlp_ratio=2).eval()
    x = torch.randn(3, 6, DIM)
    mask = torch.rand(3, 6) > 0.3
    mask[:, 0] = True
    perm = torch.randperm(6)
    torch.testing.assert_close(pool(x, mask), pool(x[:, perm], mask[:, perm]), atol=1e-5, rtol=1e-4)
    assert pool(x, mask).shape == (3, DIM)


def test_attention_pool_ignores_padding():
    pool = AttentionPool(DIM, HEADS, mlp_ratio=2).eval()
    x = torch.randn(3, 4, DIM)
    mask = torch.ones(3, 4, dtype=torch.bool)
    mask[1, 2:] = False
    garbage = torch.randn(3, 5, DIM) * 50
    x_pad = torch.cat([x, garbage], dim=1)
    mask_pad = torch.cat([mask, torch.zeros(3, 5, dtype=torch.bool)], dim=1)
    torch.testing.assert_close(pool(x, mask), pool(x_pad, mask_pad), atol=1e-5, rtol=1e-4)
    # Changing masked positions within the original length does not matter either.
    x_alt = x.clone()
    x_alt[1, 2:] = torch.randn(2, DIM)
    torch.testing.assert_close(pool(x, mask), pool(x_alt, mask), atol=1e-5, rtol=1e-4)


def test_attention_pool_empty_is_zero():
    pool = AttentionPool(DIM, HEADS)
    x = torch.randn(2, 4, DIM, requires_grad=True)
    mask = torch.zeros(2, 4, dtype=torch.bool)
    mask[0, 1] = True
    out = pool(x, mask)
    assert (out[1] == 0).all() and out[0].abs().sum() > 0
    out.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in pool.parameters())
    assert torch.isfinite(x.grad).all()
