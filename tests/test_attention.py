"""Attention layers against a hand-written reference, mask handling, and AttentionPool invariances."""

import math

import pytest
import torch

from fusion.models.attention import Attention, AttentionPool, Block, CrossBlock
from tests.helpers.models import sdpa_as_on_cuda

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


@pytest.mark.parametrize("cross", [False, True])
def test_empty_batch_gives_an_empty_output_and_gradients(cross, monkeypatch):
    """A modality absent from every row of a batch reaches its encoder as a zero-size batch (encode_rows)."""
    calls = sdpa_as_on_cuda(monkeypatch)
    attn = Attention(DIM, HEADS, fused=True)
    x = torch.randn(0, 3, DIM, requires_grad=True)
    context = torch.randn(0, 5, DIM) if cross else None
    out = attn(x, context, key_mask=torch.ones(0, 5 if cross else 3, dtype=torch.bool))
    assert out.shape == (0, 3, DIM)
    out.sum().backward()
    assert all(p.grad is not None and (p.grad == 0).all() for p in attn.parameters())
    assert attn(torch.randn(2, 3, DIM)).shape == (2, 3, DIM) and calls == [2]  # only a full batch reaches SDPA


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("autocast", [False, True])
def test_empty_batch_on_cuda(autocast):
    attn = Attention(DIM, HEADS, fused=True).cuda()
    x = torch.randn(0, 3, DIM, device="cuda", requires_grad=True)
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
        out = attn(x, key_mask=torch.ones(0, 3, dtype=torch.bool, device="cuda"))
    assert out.shape == (0, 3, DIM)
    out.float().sum().backward()
    assert all(p.grad is not None for p in attn.parameters())


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


# ---------------------------------------------------------------------------------------------------------
# Score functions (scaled_dot / additive / cosine) and the output gate, against an independent reference.
# ---------------------------------------------------------------------------------------------------------

SCORE_NAMES = ["scaled_dot", "additive", "cosine"]
FUSABLE = ["scaled_dot", "cosine"]
MAX_LOG_SCALE = math.log(100.0)


def make_layer(score, gate=False, fused=True, heads=HEADS, dtype=torch.float64, **kwargs):
    """An Attention layer in eval mode whose score parameters are randomised (so heads differ and the cosine
    temperature clamp is exercised on one head)."""
    layer = Attention(DIM, heads, fused=fused, score=score, gate=gate, **kwargs).to(dtype).eval()
    with torch.no_grad():
        for p in layer.parameters():  # non-trivial biases everywhere
            p.add_(0.1 * torch.randn_like(p))
        if score == "cosine":
            log_scales = torch.tensor([math.log(10.0), 0.3, math.log(400.0), math.log(2.0)])[:heads]
            layer.logit_scale.copy_(log_scales.reshape(heads, 1, 1))
    return layer


def reference_scores(layer: Attention, score, qh, kh):
    """qh [B, Nq, H, d], kh [B, Nk, H, d] -> logits [B, H, Nq, Nk], written independently of attention.py."""
    H, hd = qh.shape[2], qh.shape[3]
    if score == "scaled_dot":
        return torch.einsum("bqhd,bkhd->bhqk", qh, kh) / math.sqrt(hd)
    if score == "additive":
        B, Nq, Nk = qh.shape[0], qh.shape[1], kh.shape[1]
        out = qh.new_zeros(B, H, Nq, Nk)
        for i in range(Nq):
            for j in range(Nk):
                t = torch.tanh(qh[:, i] + kh[:, j])  # [B, H, d]
                out[:, :, i, j] = (t * layer.additive_v).sum(-1)
        return out
    if score == "cosine":
        cos = torch.einsum("bqhd,bkhd->bhqk", qh / qh.norm(dim=-1, keepdim=True), kh / kh.norm(dim=-1, keepdim=True))
        temp = torch.exp(torch.minimum(layer.logit_scale.reshape(H), torch.tensor(MAX_LOG_SCALE, dtype=qh.dtype)))
        return cos * temp[None, :, None, None]
    raise AssertionError(score)


def reference_full(layer: Attention, score, x, context, key_mask):
    """Projection -> heads -> score -> masked softmax -> weights @ v -> merge -> gate -> proj, by hand."""
    B, Nq, D = x.shape
    Nk = context.shape[1]
    H = layer.num_heads
    hd = D // H
    Wkv, bkv = layer.kv.weight, layer.kv.bias
    q = x @ layer.q.weight.T + layer.q.bias
    k = context @ Wkv[:D].T + bkv[:D]
    v = context @ Wkv[D:].T + bkv[D:]
    qh, kh, vh = q.reshape(B, Nq, H, hd), k.reshape(B, Nk, H, hd), v.reshape(B, Nk, H, hd)
    logits = reference_scores(layer, score, qh, kh)
    weights = torch.zeros_like(logits)
    for b in range(B):
        valid = key_mask[b] if key_mask is not None else torch.ones(Nk, dtype=torch.bool)
        if valid.any():
            weights[b][..., valid] = torch.softmax(logits[b][..., valid], dim=-1)
    o = torch.einsum("bhqk,bkhd->bqhd", weights, vh).reshape(B, Nq, D)
    if layer.gate is not None:
        o = o * torch.sigmoid(x @ layer.gate.weight.T + layer.gate.bias)
    out = o @ layer.proj.weight.T + layer.proj.bias
    if key_mask is not None:
        out = out * key_mask.any(-1)[:, None, None].to(out.dtype)
    return out, weights


def random_mask(B, N):
    """Random key mask with sample 0 all valid, sample 1 fully masked, the rest random with one valid key."""
    mask = torch.rand(B, N) > 0.5
    mask[0] = True
    mask[1] = False
    mask[2:, torch.randint(N, ())] = True
    return mask


def inputs(cross, masked, B=4, Nq=5, Nk=7, dtype=torch.float64):
    Nk = Nk if cross else Nq
    x = torch.randn(B, Nq, DIM, dtype=dtype)
    context = torch.randn(B, Nk, DIM, dtype=dtype) if cross else None
    mask = random_mask(B, Nk) if masked else None
    return x, context, mask


@pytest.mark.parametrize("score", SCORE_NAMES)
@pytest.mark.parametrize("gate", [False, True])
@pytest.mark.parametrize("cross", [False, True])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("fused", [True, False])
def test_scores_and_gate_match_reference(score, gate, cross, masked, fused):
    layer = make_layer(score, gate=gate, fused=fused)
    x, context, mask = inputs(cross, masked)
    ref_out, ref_w = reference_full(layer, score, x, x if context is None else context, mask)
    with torch.no_grad():
        out = layer(x, context, key_mask=mask)
        out_w, weights = layer(x, context, key_mask=mask, return_weights=True)
    torch.testing.assert_close(out, ref_out, atol=1e-10, rtol=1e-8)
    torch.testing.assert_close(out_w, ref_out, atol=1e-10, rtol=1e-8)
    torch.testing.assert_close(weights, ref_w, atol=1e-10, rtol=1e-8)
    assert (out != 0).any()


@pytest.mark.parametrize("score", SCORE_NAMES)
def test_scores_method_matches_reference(score):
    layer = make_layer(score)
    q = torch.randn(3, HEADS, 5, DIM // HEADS, dtype=torch.float64)
    k = torch.randn(3, HEADS, 6, DIM // HEADS, dtype=torch.float64)
    ref = reference_scores(layer, score, q.transpose(1, 2), k.transpose(1, 2))
    torch.testing.assert_close(layer.scores(q, k), ref, atol=1e-10, rtol=1e-8)


def test_gate_changes_output_and_is_applied_before_proj():
    layer = make_layer("scaled_dot", gate=True)
    x = torch.randn(2, 4, DIM, dtype=torch.float64)
    with torch.no_grad():
        gated = layer(x)
        # A gate saturated open (sigmoid -> 1) reproduces the ungated layer exactly.
        layer.gate.weight.zero_()
        layer.gate.bias.fill_(1e4)
        open_ = layer(x)
        gate_module = layer.gate
        layer.gate = None
        ungated = layer(x)
        layer.gate = gate_module
        # A gate saturated shut leaves only the projection bias (the gate acts before proj).
        layer.gate.bias.fill_(-1e4)
        shut = layer(x)
    torch.testing.assert_close(open_, ungated, atol=1e-12, rtol=0)
    assert not torch.allclose(gated, ungated)
    torch.testing.assert_close(shut, layer.proj.bias.expand_as(shut), atol=1e-12, rtol=0)


# ----- fused vs plain ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("score", FUSABLE)
@pytest.mark.parametrize("gate", [False, True])
@pytest.mark.parametrize("cross", [False, True])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_equals_plain_per_score(score, gate, cross, masked, dtype, monkeypatch):
    fused = make_layer(score, gate=gate, fused=True, dtype=dtype)
    plain = make_layer(score, gate=gate, fused=False, dtype=dtype)
    plain.load_state_dict(fused.state_dict())
    assert fused.fused is True and plain.fused is False
    x, context, mask = inputs(cross, masked, dtype=dtype)
    calls = []
    sdpa = torch.nn.functional.scaled_dot_product_attention
    monkeypatch.setattr(
        torch.nn.functional, "scaled_dot_product_attention", lambda *a, **k: calls.append(1) or sdpa(*a, **k)
    )
    with torch.no_grad():
        out_plain = plain(x, context, key_mask=mask)
        assert not calls, "fused=False must not go through SDPA"
        out_fused = fused(x, context, key_mask=mask)
        assert calls, "fused=True must go through SDPA"
    tol = dict(atol=1e-5, rtol=1e-4) if dtype == torch.float32 else dict(atol=1e-10, rtol=1e-8)
    torch.testing.assert_close(out_fused, out_plain, **tol)


@pytest.mark.parametrize("gate", [False, True])
def test_additive_ignores_fused(gate, monkeypatch):
    layer = make_layer("additive", gate=gate, fused=True)
    assert layer.fused is False
    plain = make_layer("additive", gate=gate, fused=False)
    plain.load_state_dict(layer.state_dict())

    def no_sdpa(*args, **kwargs):
        raise AssertionError("additive score must not use scaled_dot_product_attention")

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", no_sdpa)
    x, context, mask = inputs(cross=True, masked=True)
    with torch.no_grad():
        torch.testing.assert_close(layer(x, context, key_mask=mask), plain(x, context, key_mask=mask), atol=0, rtol=0)


# ----- masked keys ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("score", SCORE_NAMES)
@pytest.mark.parametrize("gate", [False, True])
@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("cross", [False, True])
def test_masked_keys_have_no_effect(score, gate, fused, cross):
    layer = make_layer(score, gate=gate, fused=fused)
    B, Nq, Nk = 4, 5, 7
    x, context, mask = inputs(cross, masked=True, B=B, Nq=Nq, Nk=Nk)
    src = x if context is None else context
    garbage = torch.randn_like(src) * 100
    src2 = torch.where(mask[..., None], src, garbage)
    assert not torch.equal(src, src2)
    with torch.no_grad():
        if cross:
            out, w = layer(x, context, key_mask=mask, return_weights=True)
            out2, w2 = layer(x, src2, key_mask=mask, return_weights=True)
            out_f, out2_f = layer(x, context, key_mask=mask), layer(x, src2, key_mask=mask)
        else:
            # Self-attention: perturbed tokens are also queries, so compare only the rows of valid tokens.
            out, w = layer(x, key_mask=mask, return_weights=True)
            out2, w2 = layer(src2, key_mask=mask, return_weights=True)
            out_f, out2_f = layer(x, key_mask=mask), layer(src2, key_mask=mask)
    for a, b in [(out, out2), (out_f, out2_f), (w, w2)]:
        if cross:
            torch.testing.assert_close(a, b, atol=1e-12, rtol=0)
        else:
            for s in range(B):
                valid = mask[s]
                ra = a[s][..., valid, :] if a.dim() == 4 else a[s][valid]
                rb = b[s][..., valid, :] if b.dim() == 4 else b[s][valid]
                torch.testing.assert_close(ra, rb, atol=1e-12, rtol=0)
    # Weights: exactly zero on masked keys, rows sum to 1 (0 for the fully masked sample); output exactly 0 there.
    keymask = mask[:, None, None, :].expand_as(w)
    assert (w[~keymask] == 0).all()
    sums = w.sum(-1)
    has_key = mask.any(-1)
    torch.testing.assert_close(sums[has_key], torch.ones_like(sums[has_key]), atol=1e-12, rtol=0)
    assert (sums[~has_key] == 0).all() and (w[~has_key] == 0).all()
    assert (out[~has_key] == 0).all() and (out_f[~has_key] == 0).all()
    assert (out[has_key] != 0).any()


# ----- gradients --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("score", SCORE_NAMES)
@pytest.mark.parametrize("gate", [False, True])
@pytest.mark.parametrize("fused", [True, False])
def test_every_parameter_gets_gradient(score, gate, fused):
    layer = make_layer(score, gate=gate, fused=fused, dtype=torch.float32)
    x, context, mask = inputs(cross=True, masked=True, dtype=torch.float32)
    out = layer(x, context, key_mask=mask)
    (out * torch.randn_like(out)).sum().backward()
    names = {n for n, _ in layer.named_parameters()}
    expected = {"q.weight", "q.bias", "kv.weight", "kv.bias", "proj.weight", "proj.bias"}
    expected |= {"additive": {"additive_v"}, "cosine": {"logit_scale"}, "scaled_dot": set()}[score]
    expected |= {"gate.weight", "gate.bias"} if gate else set()
    assert names == expected
    for n, p in layer.named_parameters():
        assert p.grad is not None, n
        assert torch.isfinite(p.grad).all(), n
        assert p.grad.abs().sum() > 0, n
    if score == "cosine":
        # one head's temperature is above the clamp: no gradient through the clamp, the others do get one
        g = layer.logit_scale.grad.flatten()
        assert g[2] == 0 and (g[[0, 1, 3]] != 0).all()
    if score == "additive":
        assert (layer.additive_v.grad.abs().sum(-1) > 0).all()  # every head's v


@pytest.mark.parametrize("score", SCORE_NAMES)
@pytest.mark.parametrize("gate", [False, True])
@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("attn_drop", [0.0, 0.5])
def test_fully_masked_no_nan_in_train_mode(score, gate, fused, attn_drop):
    layer = Attention(DIM, HEADS, fused=fused, score=score, gate=gate, attn_drop=attn_drop, proj_drop=0.1).train()
    x = torch.randn(4, 5, DIM, requires_grad=True)
    context = torch.randn(4, 6, DIM, requires_grad=True)
    mask = random_mask(4, 6)
    mask[3] = False  # two fully masked samples
    out = layer(x, context, key_mask=mask)
    assert torch.isfinite(out).all()
    assert (out[1] == 0).all() and (out[3] == 0).all()
    out.pow(2).sum().backward()
    for n, p in [("x", x), ("context", context), *layer.named_parameters()]:
        assert p.grad is not None and torch.isfinite(p.grad).all(), n
    assert (context.grad[~mask] == 0).all()  # masked keys (incl. fully masked samples) receive no gradient
    assert (x.grad[1] == 0).all() and (x.grad[3] == 0).all()
    # self-attention with every sample fully masked
    out, w = layer(x, key_mask=torch.zeros(4, 5, dtype=torch.bool), return_weights=True)
    assert (out == 0).all() and (w == 0).all()


# ----- cosine temperature clamp -----------------------------------------------------------------------------


def diagonal(scores):
    """[B, H, N, N] -> the query i / key i logits [B, H, N]."""
    return torch.diagonal(scores, dim1=-2, dim2=-1)


@pytest.mark.parametrize("fused", [True, False])
def test_cosine_temperature_is_clamped(fused):
    layer = make_layer("cosine", fused=fused)
    hd = DIM // HEADS
    q = torch.randn(2, HEADS, 5, hd, dtype=torch.float64)
    k = torch.randn(2, HEADS, 6, hd, dtype=torch.float64)
    with torch.no_grad():
        layer.logit_scale.fill_(1e4)  # exp would overflow to inf without the clamp
        s = layer.scores(q, k)
        assert torch.isfinite(s).all()
        assert s.abs().max() <= 100.0 * (1 + 1e-9)
        # q == k: cosine 1 -> exactly the cap; -q: -cap
        cap = torch.full((2, HEADS, 5), 100.0, dtype=torch.float64)
        torch.testing.assert_close(diagonal(layer.scores(q, q)), cap)
        torch.testing.assert_close(diagonal(layer.scores(q, -q)), -cap)
        # the layer's output stays finite and matches the reference, which caps the temperature at 100
        x, context, mask = inputs(cross=True, masked=True)
        out = layer(x, context, key_mask=mask)
        assert torch.isfinite(out).all()
        torch.testing.assert_close(out, reference_full(layer, "cosine", x, context, mask)[0], atol=1e-10, rtol=1e-8)
        # below the cap the temperature is exp(logit_scale), per head
        temps = torch.tensor([1.0, 5.0, 20.0, 99.0], dtype=torch.float64)
        layer.logit_scale.copy_(temps.log().reshape(-1, 1, 1))
        diag = diagonal(layer.scores(q, q))
        torch.testing.assert_close(diag, temps[None, :, None].expand_as(diag))


def test_cosine_max_logit_scale_argument():
    layer = Attention(DIM, HEADS, score="cosine", max_logit_scale=7.0).double()
    with torch.no_grad():
        layer.logit_scale.fill_(50.0)
    q = torch.randn(1, HEADS, 3, DIM // HEADS, dtype=torch.float64)
    torch.testing.assert_close(diagonal(layer.scores(q, q)), torch.full((1, HEADS, 3), 7.0, dtype=torch.float64))


def test_cosine_initial_temperature_is_ten():
    layer = Attention(DIM, HEADS, score="cosine").double()
    q = torch.randn(1, HEADS, 3, DIM // HEADS, dtype=torch.float64)
    torch.testing.assert_close(diagonal(layer.scores(q, q)), torch.full((1, HEADS, 3), 10.0, dtype=torch.float64))


# ----- construction and pass-through ------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [Attention, Block, CrossBlock, AttentionPool])
def test_unknown_score_raises(cls):
    with pytest.raises(ValueError) as exc:
        cls(DIM, HEADS, score="dot")
    msg = str(exc.value)
    assert "'dot'" in msg
    for name in SCORE_NAMES:
        assert name in msg


@pytest.mark.parametrize("cls", [Block, CrossBlock, AttentionPool])
@pytest.mark.parametrize("score", SCORE_NAMES)
@pytest.mark.parametrize("gate", [False, True])
def test_blocks_pass_score_and_gate(cls, score, gate):
    blk = cls(DIM, HEADS, mlp_ratio=2, score=score, gate=gate).eval()
    assert blk.attn.score == score
    assert (blk.attn.gate is not None) == gate
    assert blk.attn.fused is (score != "additive")
    assert hasattr(blk.attn, "additive_v") == (score == "additive")
    assert hasattr(blk.attn, "logit_scale") == (score == "cosine")
    x = torch.randn(2, 5, DIM)
    mask = torch.tensor([[1, 1, 0, 1, 0], [0, 0, 0, 0, 0]], dtype=torch.bool)
    x2 = torch.where(mask[..., None], x, torch.randn_like(x) * 100)
    if cls is CrossBlock:
        target = torch.randn(2, 3, DIM)
        out, out2 = blk(target, x, mask), blk(target, x2, mask)
        torch.testing.assert_close(out, out2)
        torch.testing.assert_close(out[1], target[1] + blk.mlp(blk.norm2(target[1])))
    elif cls is Block:
        out, out2 = blk(x, mask), blk(x2, mask)
        torch.testing.assert_close(out[0][mask[0]], out2[0][mask[0]])
    else:
        out, out2 = blk(x, mask), blk(x2, mask)
        torch.testing.assert_close(out, out2)
        assert (out[1] == 0).all()
    assert torch.isfinite(out).all()


# ----- permutation symmetry ---------------------------------------------------------------------------------


@pytest.mark.parametrize("score", SCORE_NAMES)
@pytest.mark.parametrize("gate", [False, True])
@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("masked", [False, True])
def test_permutation_symmetry(score, gate, fused, masked):
    layer = make_layer(score, gate=gate, fused=fused)
    B, N, Nk = 4, 6, 7
    x, _, mask = inputs(cross=False, masked=masked, B=B, Nq=N)
    perm = torch.randperm(N)
    with torch.no_grad():
        # self-attention: permuting the tokens permutes the outputs (queries) and the weight matrix
        out, w = layer(x, key_mask=mask, return_weights=True)
        mask_p = None if mask is None else mask[:, perm]
        out_p, w_p = layer(x[:, perm], key_mask=mask_p, return_weights=True)
        torch.testing.assert_close(out_p, out[:, perm], atol=1e-12, rtol=1e-10)
        torch.testing.assert_close(w_p, w[:, :, perm][..., perm], atol=1e-12, rtol=1e-10)
        fused_p, fused_ref = layer(x[:, perm], key_mask=mask_p), layer(x, key_mask=mask)
        torch.testing.assert_close(fused_p, fused_ref[:, perm], atol=1e-12, rtol=1e-10)
        # cross-attention: query order -> equivariant, key order -> invariant
        context = torch.randn(B, Nk, DIM, dtype=torch.float64)
        cmask = random_mask(B, Nk) if masked else None
        kperm = torch.randperm(Nk)
        cmask_p = None if cmask is None else cmask[:, kperm]
        ref = layer(x, context, key_mask=cmask)
        torch.testing.assert_close(layer(x[:, perm], context, key_mask=cmask), ref[:, perm], atol=1e-12, rtol=1e-10)
        torch.testing.assert_close(layer(x, context[:, kperm], key_mask=cmask_p), ref, atol=1e-12, rtol=1e-10)
        _, wc = layer(x, context, key_mask=cmask, return_weights=True)
        _, wc_p = layer(x, context[:, kperm], key_mask=cmask_p, return_weights=True)
        torch.testing.assert_close(wc_p, wc[..., kperm], atol=1e-12, rtol=1e-10)


@pytest.mark.parametrize("score", SCORE_NAMES)
@pytest.mark.parametrize("fused", [True, False])
def test_attention_dropout_only_in_train_mode(score, fused):
    layer = make_layer(score, fused=fused, attn_drop=0.5)
    no_drop = make_layer(score, fused=fused)
    no_drop.load_state_dict(layer.state_dict())
    x, context, mask = inputs(cross=True, masked=True)
    with torch.no_grad():
        torch.testing.assert_close(layer(x, context, key_mask=mask), no_drop(x, context, key_mask=mask))
        layer.train()
        a, b = layer(x, context, key_mask=mask), layer(x, context, key_mask=mask)
    assert not torch.allclose(a, b)  # dropout on the attention weights is active in training
    assert (a[1] == 0).all() and (b[1] == 0).all()  # fully masked sample stays exactly zero
