"""Method-specific checks of the token-level attention fusions: early, co_attention, bottleneck, perceiver.

(The generic shape / missing-modality / gradient / config tests in test_fusions.py cover them as well.)
"""

import inspect
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from fusion.explain.capture import captured_attention
from fusion.models.fusions import FUSIONS, build_fusion

CONF = Path(__file__).resolve().parents[1] / "conf" / "fusion"
TOKEN_FUSIONS = ["early", "co_attention", "bottleneck", "perceiver"]
MODALITIES = ["text", "image", "audio"]
SIZES = {"text": 5, "image": 4, "audio": 6}
DIM, HEADS = 16, 2
ATOL = dict(atol=1e-5, rtol=1e-4)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def build(name, modalities=MODALITIES, **kwargs):
    return build_fusion(name, list(modalities), DIM, num_heads=HEADS, **kwargs).eval()


def make_tokens(modalities=MODALITIES, B=3):
    """Random tokens; random padding masks with the first token of every sample valid."""
    tokens = {m: torch.randn(B, SIZES[m], DIM) for m in modalities}
    masks = {m: torch.rand(B, SIZES[m]) > 0.4 for m in modalities}
    for m in masks:
        masks[m][:, 0] = True
    return tokens, masks


def drop(tokens, masks, m, sample):
    """Modality m absent for `sample`: all-False mask and wild content."""
    tokens = {k: v.clone() for k, v in tokens.items()}
    masks = {k: v.clone() for k, v in masks.items()}
    masks[m][sample] = False
    tokens[m][sample] = torch.randn_like(tokens[m][sample]) * 100
    return tokens, masks


def garble_invalid(tokens, masks):
    return {m: torch.where(masks[m][..., None], t, torch.randn_like(t) * 100) for m, t in tokens.items()}


# ---------------------------------------------------------------------------------------------- all four


def test_registered_and_configs_document_real_knobs():
    assert set(TOKEN_FUSIONS) <= set(FUSIONS)
    for name in TOKEN_FUSIONS:
        text = (CONF / f"{name}.yaml").read_text().splitlines()
        assert text[0].startswith("# ") and "20" in text[0]  # names the method and its paper's year
        cfg = OmegaConf.to_container(OmegaConf.load(CONF / f"{name}.yaml"))
        assert cfg.pop("name") == name
        params = inspect.signature(FUSIONS[name].__init__).parameters
        assert cfg and set(cfg) <= set(params), name
        for line in text[2:]:
            assert "#" in line, f"{name}: knob without a comment: {line!r}"
        assert FUSIONS[name].__module__.endswith(name) and "20" in inspect.getmodule(FUSIONS[name]).__doc__


@pytest.mark.parametrize("name", TOKEN_FUSIONS)
def test_masked_tokens_have_no_effect_and_get_no_gradient(name):
    fusion = build(name)
    tokens, masks = make_tokens()
    ref = fusion(tokens, masks)
    torch.testing.assert_close(fusion(garble_invalid(tokens, masks), masks), ref, **ATOL)
    leaves = {m: t.clone().requires_grad_(True) for m, t in tokens.items()}
    fusion(leaves, masks).pow(2).sum().backward()
    for m, t in leaves.items():
        assert (t.grad[~masks[m]] == 0).all(), m
        assert t.grad[masks[m]].abs().sum() > 0, m


@pytest.mark.parametrize("name", TOKEN_FUSIONS)
def test_permuting_tokens_within_a_modality_leaves_output_invariant(name):
    """No fusion adds positional information: position has to be in the tokens already."""
    fusion = build(name)
    tokens, masks = make_tokens()
    ref = fusion(tokens, masks)
    perms = {m: torch.randperm(SIZES[m]) for m in MODALITIES}
    out = fusion({m: t[:, perms[m]] for m, t in tokens.items()}, {m: k[:, perms[m]] for m, k in masks.items()})
    torch.testing.assert_close(out, ref, **ATOL)


@pytest.mark.parametrize("name", TOKEN_FUSIONS)
def test_absent_modality_equals_model_built_without_it(name):
    """Sample 1 lacks audio: its output is what the same weights give with audio not in the model at all
    (per-modality output blocks: audio's block is zero and the others match)."""
    full = build(name)
    sub = build(name, ["text", "image"])
    state = full.state_dict()
    sub.load_state_dict({k: state[k] for k in sub.state_dict()})  # the sub-model's weights are a subset
    tokens, masks = drop(*make_tokens(), "audio", 1)
    out, ref = full(tokens, masks), sub({m: tokens[m] for m in sub.modalities}, {m: masks[m] for m in sub.modalities})
    if full.out_dim != sub.out_dim:  # per-modality blocks in modality order (bottleneck: then the shared one)
        audio = slice(2 * DIM, 3 * DIM)
        assert (out[1, audio] == 0).all()
        out = torch.cat([out[:, : audio.start], out[:, audio.stop :]], dim=-1)
    torch.testing.assert_close(out[1], ref[1], **ATOL)
    assert not torch.allclose(out[0], ref[0], **ATOL)  # where audio is present, it matters


def recorded(fusion, tokens, masks):
    """The fusion's output and the weights of its attention layers as explain records them:
    {layer name relative to the fusion: [calls, B, H, N_query, N_key]}."""
    with torch.no_grad(), captured_attention(fusion) as records:
        out = fusion(tokens, masks)
    return out, {name: torch.stack(calls) for name, calls in records.items()}


def layers(weights, pattern):
    """The weights of the layers named ``pattern`` with ``{}`` for the layer index, stacked in index order."""
    return torch.cat([weights[pattern.format(i)] for i in range(len(weights)) if pattern.format(i) in weights])


@pytest.mark.parametrize("name", TOKEN_FUSIONS)
def test_recorded_attention_and_maps(name):
    """Recording leaves the output as it is; every weight row is a softmax (or all zero: nothing to read);
    the fusion's own maps give token weights per modality of the batch."""
    cfg = OmegaConf.to_container(OmegaConf.load(CONF / f"{name}.yaml"))
    cfg.pop("name")
    fusion = build(name, **cfg)  # the shipped defaults
    tokens, masks = drop(*make_tokens(), "audio", 1)
    ref = fusion(tokens, masks)
    out, weights = recorded(fusion, tokens, masks)
    torch.testing.assert_close(out, ref, **ATOL)  # recording does not change the result
    assert weights
    for key, w in weights.items():
        assert not w.requires_grad and torch.isfinite(w).all() and (w >= 0).all()
        sums = w.sum(-1)
        assert torch.all(torch.isclose(sums, torch.ones_like(sums)) | (sums == 0)), key
    with captured_attention(fusion) as records:
        fusion(*make_tokens(B=2))
    maps = fusion.attention_maps(records)
    assert {m: tuple(t.shape) for m, t in maps.tokens.items()} == {m: (2, n) for m, n in SIZES.items()}


# ------------------------------------------------------------------------------------------------- early


def test_early_is_joint_from_the_first_layer():
    fusion = build("early", depth=1)
    tokens, masks = make_tokens()
    _, weights = recorded(fusion, tokens, masks)
    spans = fusion.last_spans
    assert spans == {"text": slice(0, 5), "image": slice(5, 9), "audio": slice(9, 15)}
    joint = weights["blocks.0.attn"][0]
    # text queries put weight on audio keys (one softmax over all modalities' tokens) ...
    assert joint[:, :, spans["text"], spans["audio"]].sum() > 0
    # ... never on masked keys
    mask = torch.cat([masks[m] for m in MODALITIES], dim=1)
    assert (joint.transpose(1, 3)[~mask] == 0).all()
    pool = weights["pool.attn"][0, :, :, 0]
    torch.testing.assert_close(pool.sum(-1), torch.ones(3, HEADS))


def test_early_modality_embedding_tells_modalities_apart():
    fusion = build("early", ["text", "audio"])
    x = torch.randn(2, 5, DIM)
    y = torch.randn(2, 5, DIM)
    mask = torch.ones(2, 5, dtype=torch.bool)

    def swap():
        return (
            fusion({"text": x, "audio": y}, {"text": mask, "audio": mask}),
            fusion({"text": y, "audio": x}, {"text": mask, "audio": mask}),
        )

    a, b = swap()
    assert not torch.allclose(a, b, **ATOL)
    with torch.no_grad():
        for p in fusion.embed.embed.values():
            p.zero_()
    a, b = swap()  # without type embeddings the joint sequence is a set: swapping roles changes nothing
    torch.testing.assert_close(a, b, **ATOL)


# ------------------------------------------------------------------------------------------ co_attention


def _manual_weights(block, query, context, context_mask):
    """softmax(q k^T / sqrt(d)) over valid context keys, q from the query stream, k from the context."""
    attn = block.attn
    B, Nq, D = query.shape
    q = attn.q(block.norm1(query)).reshape(B, Nq, attn.num_heads, -1).transpose(1, 2)
    k = attn.kv(block.norm_context(context))[..., :D].reshape(B, context.shape[1], attn.num_heads, -1)
    scores = q @ k.permute(0, 2, 3, 1) * attn.scale
    scores = scores.masked_fill(~context_mask[:, None, None, :], float("-inf"))
    return scores.softmax(-1).nan_to_num(0.0)


def test_co_attention_directions_and_affinities():
    """Two modalities: text queries image and image queries text, both from the input states (parallel
    streams); each direction's weights are its own softmax(q_target k_source^T)."""
    fusion = build("co_attention", ["text", "image"], depth=2)
    assert set(fusion.co[0]) == {"text", "image"}
    tokens, masks = make_tokens(["text", "image"])
    _, weights = recorded(fusion, tokens, masks)
    w = {
        f"{source}->{target}": layers(weights, f"co.{{}}.{target}.attn")
        for target, source in (("text", "image"), ("image", "text"))
    }
    assert w["image->text"].shape == (2, 3, HEADS, 5, 4) and w["text->image"].shape == (2, 3, HEADS, 4, 5)
    embed = fusion.embed.embed
    with torch.no_grad():
        for target, source in (("text", "image"), ("image", "text")):
            ref = _manual_weights(fusion.co[0][target], tokens[target], tokens[source] + embed[source], masks[source])
            torch.testing.assert_close(w[f"{source}->{target}"][0], ref, **ATOL)
    # separate projections per direction: the affinities are not each other's transpose
    assert not torch.allclose(w["image->text"][0], w["text->image"][0].transpose(-1, -2), atol=1e-3)


def test_co_attention_each_stream_reads_the_others():
    fusion = build("co_attention", ["text", "image"])
    tokens, masks = make_tokens(["text", "image"])
    ref = fusion(tokens, masks)
    text, image = slice(0, DIM), slice(DIM, 2 * DIM)
    for m, other_slice in (("image", text), ("text", image)):
        changed = {k: v.clone() for k, v in tokens.items()}
        changed[m][1, 0] += torch.randn(DIM)
        out = fusion(changed, masks)
        assert not torch.allclose(out[1, other_slice], ref[1, other_slice])  # the other stream sees m
        torch.testing.assert_close(out[[0, 2]], ref[[0, 2]])  # samples stay separate


def test_co_attention_three_modalities_one_softmax_over_the_others():
    fusion = build("co_attention")
    tokens, masks = drop(*make_tokens(), "audio", 1)
    _, weights = recorded(fusion, tokens, masks)
    w = weights["co.0.text.attn"][0]  # [B, H, N_text, N_image + N_audio]
    torch.testing.assert_close(w.sum(-1), torch.ones(3, HEADS, 5))
    assert w[0, :, :, :4].sum() > 0 and w[0, :, :, 4:].sum() > 0  # both sources compete for attention
    assert (w[1, :, :, 4:] == 0).all()  # absent audio: no weight
    assert (weights["co.0.audio.attn"][:, 0].sum(-1) > 0).all()


def test_co_attention_single_modality_is_self_attention_and_pool():
    fusion = build("co_attention", ["audio"], depth=2)
    assert fusion.embed is None and all(len(co) == 0 for co in fusion.co)
    tokens, masks = make_tokens(["audio"])
    x = tokens["audio"]
    for blocks in fusion.self_blocks:
        x = blocks["audio"](x, masks["audio"])
    torch.testing.assert_close(fusion(tokens, masks), fusion.pool["audio"](x, masks["audio"]))


# -------------------------------------------------------------------------------------------- bottleneck


def _perturb_valid(tokens, m, sample=1):
    changed = {k: v.clone() for k, v in tokens.items()}
    changed[m][sample, 0] += torch.randn(DIM)
    return changed


def test_bottleneck_cross_modal_flow_only_through_bottlenecks():
    """Perturbing text cannot change the audio stream before fusion_layer. The first fusion layer writes text
    into the bottlenecks (audio's Block there reads the bottlenecks from before that layer), so the audio
    stream changes from the second fusion layer on. Without bottleneck tokens it never changes."""
    num_layers, fusion_layer = 4, 2
    fusion = build("bottleneck", ["text", "audio"], num_layers=num_layers, fusion_layer=fusion_layer)
    tokens, masks = make_tokens(["text", "audio"])
    changed = _perturb_valid(tokens, "text")
    for k in range(num_layers + 1):
        (ref, z_ref), (out, z_out) = fusion.streams(tokens, masks, k), fusion.streams(changed, masks, k)
        assert not torch.allclose(out["text"][1], ref["text"][1])  # text itself changes from layer 0
        if k <= fusion_layer:
            assert z_ref is None and z_out is None
        else:
            assert not torch.allclose(z_out[1], z_ref[1]), k  # text reaches the bottlenecks at once
            torch.testing.assert_close(z_out[[0, 2]], z_ref[[0, 2]])  # only for the perturbed sample
        if k <= fusion_layer + 1:
            assert torch.equal(out["audio"], ref["audio"]), k
        else:
            assert not torch.allclose(out["audio"][1], ref["audio"][1]), k
            torch.testing.assert_close(out["audio"][[0, 2]], ref["audio"][[0, 2]])
    # the same by gradient: d(audio stream up to fusion_layer) / d(text) = 0, after all layers != 0
    text = tokens["text"].clone().requires_grad_(True)
    x, _ = fusion.streams({**tokens, "text": text}, masks, fusion_layer)
    assert torch.autograd.grad(x["audio"].sum(), text, allow_unused=True)[0] is None
    x, _ = fusion.streams({**tokens, "text": text}, masks)
    assert torch.autograd.grad(x["audio"].sum(), text)[0].abs().sum() > 0

    audio_out = slice(DIM, 2 * DIM)
    for kwargs in (dict(num_bottlenecks=0), dict(fusion_layer=num_layers)):
        isolated = build("bottleneck", ["text", "audio"], num_layers=num_layers, **kwargs)
        assert isolated.bottleneck is None and isolated.out_dim == 2 * DIM
        torch.testing.assert_close(isolated(changed, masks)[:, audio_out], isolated(tokens, masks)[:, audio_out])
    out, ref = fusion(changed, masks), fusion(tokens, masks)
    assert fusion.out_dim == 3 * DIM and not torch.allclose(out[1, audio_out], ref[1, audio_out])


def test_bottleneck_average_over_present_modalities_only():
    fusion = build("bottleneck", ["text", "audio"], num_layers=1, fusion_layer=0, num_bottlenecks=3)
    tokens, masks = make_tokens(["text", "audio"])
    masks["audio"][1] = False  # sample 1: text only
    masks["text"][2] = False
    masks["audio"][2] = False  # sample 2: nothing
    tokens["audio"][1] = torch.randn(SIZES["audio"], DIM) * 100
    _, z = fusion.streams(tokens, masks)
    z0 = fusion.bottleneck.expand(3, -1, -1)
    z_mask = torch.ones(3, 3, dtype=torch.bool)
    updates = {}
    for m in ("text", "audio"):
        h = fusion.layers[0][m](torch.cat([tokens[m], z0], 1), torch.cat([masks[m], z_mask], 1))
        updates[m] = h[:, -3:]
    torch.testing.assert_close(z[0], (updates["text"][0] + updates["audio"][0]) / 2)  # mean of both
    torch.testing.assert_close(z[1], updates["text"][1])  # absent audio does not enter the mean
    torch.testing.assert_close(z[2], z0[2])  # nothing present: bottlenecks unchanged
    out = fusion(tokens, masks)
    assert (out[2] == 0).all() and torch.isfinite(out).all()
    torch.testing.assert_close(out[:2, 2 * DIM :], z[:2].mean(1))  # last block: the pooled bottlenecks


def test_bottleneck_rejects_bad_fusion_layer():
    with pytest.raises(ValueError, match="fusion_layer"):
        build("bottleneck", num_layers=2, fusion_layer=3)


# --------------------------------------------------------------------------------------------- perceiver


@pytest.mark.parametrize("pool", ["mean", "attention"])
def test_perceiver_latents_and_empty_sample(pool):
    fusion = build("perceiver", num_latents=5, num_cross=3, latent_depth=2, pool=pool)
    assert fusion.latents.shape == (1, 5, DIM) and fusion.out_dim == DIM
    tokens, masks = make_tokens()
    for m in MODALITIES:
        masks[m][2] = False  # sample 2 has no valid token at all
        tokens[m][2] = torch.randn_like(tokens[m][2]) * 100
    out, weights = recorded(fusion, tokens, masks)
    assert out.shape == (3, DIM) and torch.isfinite(out).all()
    assert (out[2] == 0).all() and (out[:2] != 0).any()
    w = {
        "cross": layers(weights, "cross.{}.attn"),
        "latent": torch.cat([w for n, w in weights.items() if n.startswith("latent_blocks.")]),
    }
    assert w["cross"].shape == (3, 3, HEADS, 5, 15) and w["latent"].shape == (6, 3, HEADS, 5, 5)
    assert (w["cross"][:, 2] == 0).all()  # nothing to read for the empty sample
    assert ("pool.attn" in weights) == (pool == "attention")


def test_perceiver_invariant_to_any_token_order():
    """A permutation of the concatenated input that moves whole modality blocks (the model's modality order
    changed; type embeddings follow their modality) leaves the output unchanged, as do permutations within a
    modality (test above): the latents read the tokens as a set."""
    fusion = build("perceiver")
    tokens, masks = make_tokens()
    ref = fusion(tokens, masks)
    reordered = build("perceiver", ["audio", "text", "image"])
    reordered.load_state_dict(fusion.state_dict())
    torch.testing.assert_close(reordered(tokens, masks), ref, **ATOL)


def test_perceiver_output_size_independent_of_input_length():
    fusion = build("perceiver", ["audio"])
    for n in (1, 7, 50):
        out = fusion({"audio": torch.randn(2, n, DIM)}, {"audio": torch.ones(2, n, dtype=torch.bool)})
        assert out.shape == (2, DIM)


def test_perceiver_weight_sharing():
    shared = build("perceiver", num_cross=4, share_weights=True)
    separate = build("perceiver", num_cross=4, share_weights=False)
    assert len(shared.cross) == 2 and len(separate.cross) == 4  # the paper: all shared but the first
    count = lambda f: sum(p.numel() for p in f.parameters())  # noqa: E731
    assert count(shared) < count(separate)
    _, weights = recorded(shared, *make_tokens())
    assert layers(weights, "cross.{}.attn").shape[0] == 4  # still four cross-attends
    with pytest.raises(ValueError, match="pool"):
        build("perceiver", pool="max")
