"""Fusion methods and the model builder: shapes, missing modalities, masking, gradients, config files."""

import itertools

import pytest
import torch
from omegaconf import OmegaConf

from fusion.explain.capture import captured_attention
from fusion.models.builder import build_model
from fusion.models.fusions import FUSIONS, CrossAttentionFusion, build_fusion, register_fusion
from tests.helpers.models import (
    CONF,
    FUSION_NAMES,
    META,
    MODALITIES,
    fusion_cfg,
    make_batch,
    make_model,
    sdpa_as_on_cuda,
)

SUBSETS = [list(c) for r in (1, 2, 3) for c in itertools.combinations(MODALITIES, r)]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def all_present(modalities, B=2):
    return make_batch(modalities, {m: [True] * B for m in modalities})


def garble(batch, m, i):
    """Random content for absent sample i of modality m (present stays False, masks stay False)."""
    batch = {k: dict(v) for k, v in batch.items()}
    entry = batch[m]
    for key, value in entry.items():
        if key in ("mask", "present"):
            continue
        value = value.clone()
        if value.dtype == torch.uint8:
            value[i] = torch.randint(0, 256, value[i].shape, dtype=torch.uint8)
        elif value.dtype == torch.long:
            value[i] = torch.randint(1, 30, value[i].shape)
        else:
            value[i] = torch.randn(value[i].shape) * 10
        entry[key] = value
    return batch


@pytest.mark.parametrize("fusion", FUSION_NAMES)
@pytest.mark.parametrize("modalities", SUBSETS, ids="+".join)
def test_output_shape(fusion, modalities):
    model = make_model(fusion, modalities)
    assert model.fusion.out_dim > 0
    batch = all_present(modalities, B=3)
    assert model.features(batch).shape == (3, model.fusion.out_dim)
    assert model(batch).shape == (3, 3)


@pytest.mark.parametrize("fusion", FUSION_NAMES)
@pytest.mark.parametrize("modalities", SUBSETS, ids="+".join)
def test_missing_modalities_finite(fusion, modalities):
    """Sample 0 complete, sample 1 lacks the first modality, sample 2 lacks everything (train mode)."""
    model = make_model(fusion, modalities).train()
    present = {m: [True, m != modalities[0], False] for m in modalities}
    out = model(make_batch(modalities, present))
    assert torch.isfinite(out).all()
    out.pow(2).sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is None or torch.isfinite(p.grad).all(), name


@pytest.mark.parametrize("fusion", FUSION_NAMES)
@pytest.mark.parametrize("absent", MODALITIES)
def test_a_modality_absent_from_the_whole_batch_trains_as_on_cuda(fusion, absent, monkeypatch):
    """Its encoder gets a zero-size batch, which CUDA's SDPA answers with no tensor (found on an H100): every
    fusion still gives finite outputs and gradients, and no empty batch reaches SDPA."""
    calls = sdpa_as_on_cuda(monkeypatch)
    model = make_model(fusion, MODALITIES).train()
    out = model(make_batch(MODALITIES, {m: [m != absent] * 3 for m in MODALITIES}))
    assert out.shape == (3, 3) and torch.isfinite(out).all()
    out.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert calls and 0 not in calls


@pytest.mark.parametrize("fusion", FUSION_NAMES)
@pytest.mark.parametrize("modalities", SUBSETS, ids="+".join)
def test_absent_content_is_ignored(fusion, modalities):
    model = make_model(fusion, modalities).eval()
    for m in modalities:
        present = {k: [k != m, True, k != m] for k in modalities}  # m absent for samples 0 and 2
        batch = make_batch(modalities, present)
        with torch.no_grad():
            ref = model(batch)
            out = model(garble(garble(batch, m, 0), m, 2))
        torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("fusion", FUSION_NAMES)
@pytest.mark.parametrize("modalities", SUBSETS, ids="+".join)
def test_gradient_reaches_every_encoder(fusion, modalities):
    model = make_model(fusion, modalities)
    model(all_present(modalities, B=3)).sum().backward()
    for m in modalities:
        trainable = [(n, p) for n, p in model.encoders[m].named_parameters() if p.requires_grad]
        assert trainable
        for name, p in trainable:
            assert p.grad is not None, f"{m}: {name}"
        assert any(p.grad.abs().sum() > 0 for _, p in trainable)
    for name, p in model.fusion.named_parameters():
        assert p.grad is not None, name


def _tokens(B=3, sizes=(("text", 5), ("image", 4), ("audio", 6)), dim=16):
    tokens = {m: torch.randn(B, n, dim) for m, n in sizes}
    masks = {m: torch.rand(B, n) > 0.4 for m, n in sizes}
    for m in masks:
        masks[m][:, 0] = True
    return tokens, masks


def test_cross_attention_uses_only_valid_source_positions():
    fusion = build_fusion("cross_attention", MODALITIES, 16, num_heads=2, depth=2, self_depth=1).eval()
    tokens, masks = _tokens()
    ref = fusion(tokens, masks)
    # Perturb every invalid position of every modality: no effect anywhere.
    perturbed = {m: torch.where(masks[m][..., None], t, torch.randn_like(t) * 100) for m, t in tokens.items()}
    torch.testing.assert_close(fusion(perturbed, masks), ref, atol=1e-5, rtol=1e-4)
    # Perturb one valid audio token of sample 1: the text target of sample 1 changes, other samples do not.
    changed = {m: t.clone() for m, t in tokens.items()}
    changed["audio"][1, 0] += torch.randn(16)  # (a constant shift would vanish in LayerNorm)
    out = fusion(changed, masks)
    text_slice = slice(0, 16)
    assert not torch.allclose(out[1, text_slice], ref[1, text_slice])
    torch.testing.assert_close(out[[0, 2]], ref[[0, 2]])
    # Gradients with respect to the source tokens vanish at invalid positions.
    audio = tokens["audio"].clone().requires_grad_(True)
    fusion({**tokens, "audio": audio}, masks)[:, text_slice].sum().backward()
    assert (audio.grad[~masks["audio"]] == 0).all()
    assert audio.grad[masks["audio"]].abs().sum() > 0


def test_cross_attention_missing_source_contributes_nothing():
    fusion = build_fusion("cross_attention", ["text", "audio"], 16, num_heads=2).eval()
    tokens, masks = _tokens(sizes=(("text", 5), ("audio", 6)))
    masks["audio"][1] = False  # audio absent for sample 1
    with torch.no_grad(), captured_attention(fusion) as records:
        out = fusion(tokens, masks)
    # Absent target pools to zero; absent source yields zero attention weights for that sample.
    assert (out[1, 16:] == 0).all()
    weights = torch.stack(records["cross.audio_to_text.0.attn"])
    assert weights.shape == (1, 3, 2, 5, 6)
    assert (weights[:, 1] == 0).all()
    assert torch.stack(records["cross.text_to_audio.0.attn"]).shape == (1, 3, 2, 6, 5)
    # The text output of sample 1 is the same whatever the (invalid) audio tokens hold.
    tokens2 = {**tokens, "audio": tokens["audio"].clone()}
    tokens2["audio"][1] = torch.randn(6, 16)
    torch.testing.assert_close(fusion(tokens2, masks)[1], out[1])


def test_cross_attention_single_modality_is_self_attention_and_pool():
    fusion = build_fusion("cross_attention", ["audio"], 16, num_heads=2).eval()
    assert len(fusion.cross) == 0 and isinstance(fusion.merge["audio"], torch.nn.Identity)
    tokens, masks = _tokens(sizes=(("audio", 6),))
    x = tokens["audio"]
    for blk in fusion.blocks["audio"]:
        x = blk(x, masks["audio"])
    torch.testing.assert_close(fusion(tokens, masks), fusion.pool["audio"](x, masks["audio"]))


def test_registry():
    assert {"late", "cross_attention"} <= set(FUSIONS)
    with pytest.raises(ValueError, match="cross_attention"):
        build_fusion("nope", MODALITIES, 16)
    with pytest.raises(ValueError, match="already registered"):
        register_fusion("late")(CrossAttentionFusion)


@pytest.mark.parametrize("fusion", FUSION_NAMES)
@pytest.mark.parametrize("modalities", SUBSETS, ids="+".join)
def test_builder_from_config_files(fusion, modalities):
    """Build with the shipped config files unchanged (default dims), forward + backward a tiny batch."""
    model = build_model(
        OmegaConf.load(CONF / "model" / "default.yaml"), fusion_cfg(fusion), modalities, META, num_classes=4
    )
    assert model.modalities == modalities
    assert model.encoders.keys() == set(modalities)
    assert 0 < model.num_parameters(trainable_only=True) <= model.num_parameters()
    out = model(make_batch(modalities, {m: [True, i % 2 == 0] for i, m in enumerate(modalities)}))
    assert out.shape == (2, 4)
    out.sum().backward()


def test_builder_rejects_unknown_names():
    cfg = OmegaConf.load(CONF / "model" / "default.yaml")
    with pytest.raises(ValueError, match="late"):
        build_model(cfg, OmegaConf.create({"name": "bogus"}), ["text"], META, 2)
    with pytest.raises(ValueError, match="audio"):
        build_model(cfg, fusion_cfg("late"), ["video"], META, 2)
