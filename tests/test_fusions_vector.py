"""Vector-level fusions (late, late_avg, gated, tensor, low_rank) against reference formulas."""

import pytest
import torch

from fusion.models.fusions import build_fusion
from fusion.models.fusions.pooling import ModalityPooling

MODALITIES = ["text", "image", "audio"]
SIZES = {"text": 5, "image": 4, "audio": 6}
DIM = 16
VECTOR_FUSIONS = ["late", "late_avg", "gated", "tensor", "low_rank"]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def make(name, modalities=MODALITIES, **kwargs):
    return build_fusion(name, modalities, DIM, num_heads=2, num_outputs=5, **kwargs).eval()


def inputs(modalities=MODALITIES, absent=(), B=4):
    """Random tokens with random padding; ``absent`` = (modality, sample) pairs with an all-False mask."""
    tokens = {m: torch.randn(B, SIZES[m], DIM) for m in modalities}
    masks = {m: torch.rand(B, SIZES[m]) > 0.4 for m in modalities}
    for m in modalities:
        masks[m][:, 0] = True
    for m, i in absent:
        masks[m][i] = False
    return tokens, masks


# Sample 0 complete, 1 lacks text, 2 has only audio, 3 has nothing.
ABSENT = [("text", 1), ("text", 2), ("image", 2), ("text", 3), ("image", 3), ("audio", 3)]


def pooled_inputs(fusion, absent=ABSENT):
    tokens, masks = inputs(fusion.modalities, [(m, i) for m, i in absent if m in fusion.modalities])
    pooled, present = fusion.pool(tokens, masks)
    return tokens, masks, pooled, present


def test_modality_pooling_zero_for_absent_and_presence():
    pool = ModalityPooling(MODALITIES, DIM, num_heads=2).eval()
    tokens, masks = inputs(absent=ABSENT)
    pooled, present = pool(tokens, masks)
    assert present["text"].tolist() == [True, False, False, False]
    assert present["audio"].tolist() == [True, True, True, False]
    for m in MODALITIES:
        assert pooled[m].shape == (4, DIM)
        assert (pooled[m][~present[m]] == 0).all()
        torch.testing.assert_close(pooled[m], pool[m](tokens[m], masks[m]))


def test_late_is_concatenation_of_pooled_vectors_with_unchanged_parameter_names():
    fusion = make("late")
    tokens, masks, pooled, _ = pooled_inputs(fusion)
    torch.testing.assert_close(fusion(tokens, masks), torch.cat([pooled[m] for m in MODALITIES], -1))
    assert "pool.text.latent" in fusion.state_dict()  # checkpoints of the pre-refactor LateFusion still load


def test_late_avg_is_mean_of_head_logits_over_present_modalities():
    fusion = make("late_avg")
    assert fusion.outputs_logits and fusion.out_dim == 5
    tokens, masks, pooled, present = pooled_inputs(fusion)
    out = fusion(tokens, masks)
    head = {m: fusion.heads[m](pooled[m]) for m in MODALITIES}
    torch.testing.assert_close(out[0], sum(head[m][0] for m in MODALITIES) / 3)
    torch.testing.assert_close(out[1], (head["image"][1] + head["audio"][1]) / 2)
    torch.testing.assert_close(out[2], head["audio"][2])
    assert (out[3] == 0).all()
    assert (fusion.last_logits[3] == 0).all() and fusion.last_logits.shape == (4, 3, 5)


def test_late_avg_needs_num_outputs():
    with pytest.raises(ValueError, match="num_outputs"):
        build_fusion("late_avg", MODALITIES, DIM)


def reference_gates(fusion, pooled, present):
    """Softmax over the present modalities written out: exp(a_m) / sum_{present k} exp(a_k)."""
    B, M = pooled["text"].shape[0], len(fusion.modalities)
    a = fusion.gate(torch.cat([pooled[m] for m in fusion.modalities], -1)).view(B, M, -1)
    p = torch.stack([present[m] for m in fusion.modalities], 1).float()[..., None]
    e = (a - a.max(1, keepdim=True).values).exp() * p
    return e / e.sum(1, keepdim=True).clamp(min=1e-30)


def test_gated_gates_and_output_match_the_gmu_formula():
    fusion = make("gated", hidden=12)
    assert fusion.out_dim == 12
    tokens, masks, pooled, present = pooled_inputs(fusion)
    out = fusion(tokens, masks)
    z = fusion.last_gates
    assert z.shape == (4, 3, 12) and not z.requires_grad
    p = torch.stack([present[m] for m in MODALITIES], 1)
    torch.testing.assert_close(z.sum(1)[:3], torch.ones(3, 12))  # samples with a modality: sum to 1
    assert (z[~p] == 0).all()  # absent modality: gate 0
    assert (z[3] == 0).all() and (out[3] == 0).all()  # no modality: no gate, zero output
    assert (z[2, 2] == 1).all()  # only audio: all weight on audio
    torch.testing.assert_close(z, reference_gates(fusion, pooled, present))
    h = torch.stack([torch.tanh(fusion.proj[m](pooled[m])) for m in MODALITIES], 1)
    torch.testing.assert_close(out, (z * h).sum(1))


def test_gated_two_modalities_is_the_sigmoid_gmu():
    """M = 2: z = sigmoid(a_1 - a_2), h = z h_1 + (1 - z) h_2 as in Arevalo et al. (2017)."""
    fusion = make("gated", ["text", "image"])
    tokens, masks = inputs(["text", "image"])
    pooled, _ = fusion.pool(tokens, masks)
    a = fusion.gate(torch.cat([pooled["text"], pooled["image"]], -1)).view(4, 2, DIM)
    z = torch.sigmoid(a[:, 0] - a[:, 1])
    h1, h2 = (torch.tanh(fusion.proj[m](pooled[m])) for m in ("text", "image"))
    torch.testing.assert_close(fusion(tokens, masks), z * h1 + (1 - z) * h2)


def test_gated_single_modality_is_tanh_projection():
    fusion = make("gated", ["audio"])
    assert fusion.gate is None
    tokens, masks, pooled, _ = pooled_inputs(fusion)
    out = fusion(tokens, masks)
    torch.testing.assert_close(out[:3], torch.tanh(fusion.proj["audio"](pooled["audio"]))[:3])
    assert (out[3] == 0).all()


def z_vectors(fusion, pooled, present, project):
    """[v_m * present; 1] per modality, computed here independently of the fusion's helper."""
    out = []
    for m in fusion.modalities:
        v = project(m, pooled[m]) * present[m][:, None]
        out.append(torch.cat([v, torch.ones(v.shape[0], 1)], -1))
    return out


def test_tensor_fusion_is_the_einsum_outer_product():
    fusion = make("tensor", tensor_dim=4)
    assert fusion.out_dim == 5**3
    tokens, masks, pooled, present = pooled_inputs(fusion)
    z1, z2, z3 = z_vectors(fusion, pooled, present, lambda m, v: fusion.proj[m](v))
    out = fusion(tokens, masks)
    torch.testing.assert_close(out, torch.einsum("bi,bj,bk->bijk", z1, z2, z3).flatten(1))
    # Absent text (sample 1): the text slot is [0; 1], so only the text index 4 (the constant) is non-zero.
    t = out.view(4, 5, 5, 5)
    assert (t[1, :4] == 0).all() and (t[1, 4] != 0).any()
    # No modality (sample 3): the single constant 1 * 1 * 1.
    assert t[3, 4, 4, 4] == 1 and t[3].sum() == 1


def test_tensor_fusion_two_modalities():
    fusion = make("tensor", ["image", "audio"], tensor_dim=3)
    assert fusion.out_dim == 16
    tokens, masks, pooled, present = pooled_inputs(fusion)
    z1, z2 = z_vectors(fusion, pooled, present, lambda m, v: fusion.proj[m](v))
    torch.testing.assert_close(fusion(tokens, masks), torch.einsum("bi,bj->bij", z1, z2).flatten(1))


@pytest.mark.parametrize("absent", [[], ABSENT], ids=["complete", "missing"])
def test_low_rank_equals_full_tensor_contraction(absent):
    """LMF == <z_1 ⊗ z_2 ⊗ z_3, W> + b with the full weight W = sum_r lambda_r w_r^1 ⊗ w_r^2 ⊗ w_r^3."""
    fusion = make("low_rank", rank=3, out_dim=7)
    assert fusion.out_dim == 7
    tokens, masks, pooled, present = pooled_inputs(fusion, absent)
    z1, z2, z3 = z_vectors(fusion, pooled, present, lambda m, v: v)
    f = [fusion.factors[m] for m in MODALITIES]  # [rank, DIM + 1, out]
    W = torch.einsum("r,rio,rjo,rko->ijko", fusion.rank_weights, *f)
    assert W.shape == (DIM + 1, DIM + 1, DIM + 1, 7)
    ref = torch.einsum("bi,bj,bk,ijko->bo", z1, z2, z3, W) + fusion.bias
    torch.testing.assert_close(fusion(tokens, masks), ref, atol=1e-5, rtol=1e-4)
    # ... which is the TFN tensor (without projection) times W flattened.
    tensor = torch.einsum("bi,bj,bk->bijk", z1, z2, z3).flatten(1)
    torch.testing.assert_close(fusion(tokens, masks), tensor @ W.flatten(0, 2) + fusion.bias, atol=1e-5, rtol=1e-4)


def test_low_rank_default_out_dim_and_single_modality():
    fusion = make("low_rank", ["text"], rank=2)
    assert fusion.out_dim == DIM
    tokens, masks, pooled, present = pooled_inputs(fusion)
    (z,) = z_vectors(fusion, pooled, present, lambda m, v: v)
    ref = torch.einsum("bi,rio,r->bo", z, fusion.factors["text"], fusion.rank_weights) + fusion.bias
    torch.testing.assert_close(fusion(tokens, masks), ref)


@pytest.mark.parametrize("name", VECTOR_FUSIONS)
def test_gradient_reaches_every_parameter_and_no_invalid_token(name):
    fusion = make(name).train()
    tokens, masks = inputs(absent=[("text", 1)])
    tokens = {m: t.requires_grad_(True) for m, t in tokens.items()}
    fusion(tokens, masks).pow(2).sum().backward()
    for pname, p in fusion.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, pname
    for m in MODALITIES:
        assert (tokens[m].grad[~masks[m]] == 0).all()  # padding and absent samples: no gradient
        assert tokens[m].grad[masks[m]].abs().sum() > 0


@pytest.mark.parametrize("name", VECTOR_FUSIONS)
def test_all_absent_batch_is_finite(name):
    fusion = make(name).train()
    tokens, masks = inputs(absent=[(m, i) for m in MODALITIES for i in range(4)])
    out = fusion(tokens, masks)
    assert out.shape == (4, fusion.out_dim) and torch.isfinite(out).all()
    out.sum().backward()
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in fusion.parameters())
