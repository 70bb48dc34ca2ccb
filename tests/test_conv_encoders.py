"""The small convolutional encoders: shapes, masks, padding invariance, absent samples, standardisation."""

from __future__ import annotations

import pytest
import torch

from fusion.config import compose
from fusion.models.builder import build_encoder
from fusion.models.conv_encoders import (
    ConvAudioEncoder,
    ConvImageEncoder,
    ConvStack,
    ConvStage,
    ConvTextEncoder,
    HalvingMaxPool,
    canonical_polarity,
    conv_output_size,
    standardise_clips,
)
from tests.helpers.batches import audio_batch

DIM, HEADS = 16, 2


def _image_batch(n: int = 4, chans: int = 1, size: int = 20) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "image": torch.randint(0, 256, (n, chans, size, size), generator=g, dtype=torch.uint8),
        "present": torch.tensor([True, False, True, True][:n]),
    }


@pytest.mark.parametrize("downsample", ["stride", "maxpool"])
@pytest.mark.parametrize("size,chans,grid,expected_side", [(20, 1, 8, 5), (32, 3, 8, 8), (64, 3, 8, 8), (8, 1, 8, 2)])
def test_image_tokens_follow_the_input_size(size, chans, grid, expected_side, downsample):
    enc = ConvImageEncoder(
        DIM, 1, HEADS, image_size=size, in_chans=chans, channels=(4, 8, 8), grid=grid, downsample=downsample
    ).eval()
    tokens, mask = enc(_image_batch(chans=chans, size=size))
    assert tokens.shape == (4, expected_side**2, DIM) and enc.grid == (expected_side, expected_side)
    assert mask.tolist() == [[p] * expected_side**2 for p in (True, False, True, True)]
    assert torch.count_nonzero(tokens[1]) == 0  # an absent image gives zero tokens


@pytest.mark.parametrize("downsample", ["stride", "maxpool"])
@pytest.mark.parametrize("size,expected_side", [(32, 4), (20, 3), (8, 1)])
def test_first_stride_two_halves_the_grid_once_more(size, expected_side, downsample):
    """first_stride=2: the feature map, and the token grid it is pooled to, has half the side of stride 1's."""
    enc = ConvImageEncoder(
        DIM, 1, HEADS, image_size=size, in_chans=1, channels=(4, 8, 8), grid=8, first_stride=2, downsample=downsample
    ).eval()
    assert enc.backbone(torch.zeros(1, 1, size, size)).shape[-1] == expected_side == enc.grid[0]
    tokens, _ = enc(_image_batch(size=size))
    assert tokens.shape == (4, expected_side**2, DIM)
    with pytest.raises(ValueError, match="first_stride must be 1 or 2"):
        ConvImageEncoder(DIM, 1, HEADS, image_size=size, in_chans=1, channels=(4, 8, 8), first_stride=3)


def test_conv_output_size_matches_the_convolutions():
    stages = torch.nn.Sequential(*(torch.nn.Conv2d(1, 1, 3, stride=2, padding=1) for _ in range(3)))
    for size in (7, 8, 9, 33, 101):
        assert stages(torch.zeros(1, 1, size, size)).shape[-1] == conv_output_size(size, 3)


def test_maxpool_stage_equals_a_max_pool_then_a_stride_one_convolution():
    """downsample=maxpool: the 2x2 max (ceil mode: an odd side keeps its last row) comes before the stage's
    convolution, which then has stride 1; checked against torch's functional ops with the stage's weights."""
    torch.manual_seed(0)
    stage = ConvStage(3, 5, stride=2, downsample="maxpool").eval()
    x = torch.randn(2, 3, 9, 9)
    conv, bn = stage[1], stage[2]
    pooled = torch.nn.functional.max_pool2d(x, 2, ceil_mode=True)
    expected = torch.relu(bn(torch.nn.functional.conv2d(pooled, conv.weight, padding=1)))
    torch.testing.assert_close(stage(x), expected)
    assert stage(x).shape == ConvStage(3, 5, stride=2).eval()(x).shape == (2, 5, 5, 5)  # same size as a strided conv
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in ConvStage(3, 5, stride=1, downsample="maxpool"))
    with pytest.raises(ValueError, match="downsample must be one of"):
        ConvStage(3, 5, stride=2, downsample="avg")


@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize("shape", [(3, 1, 64, 104), (3, 16, 8, 12), (2, 3, 9, 9), (2, 4, 6, 7)])
def test_halving_max_pool_is_max_pool2d_bit_for_bit(shape, channels_last, monkeypatch):
    """Values (ties, NaN and -inf included) and memory format of both paths, and the gradient where one is needed.
    With even sides and no gradient needed (a raw input; any activation under no_grad) max_pool2d is not called."""
    g = torch.Generator().manual_seed(0)
    x = torch.randint(-3, 3, shape, generator=g).float()  # many ties within a window
    x.view(-1)[::17] = float("nan")
    x.view(-1)[5::23] = float("-inf")
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    pool = HalvingMaxPool()
    expected = torch.nn.functional.max_pool2d(x, 2, ceil_mode=True)
    leaf = x.clone().requires_grad_()
    through_max_pool2d = pool(leaf).detach()
    if shape[-2] % 2 == 0 and shape[-1] % 2 == 0:

        def refuse(*args, **kwargs):
            raise AssertionError("max_pool2d called where no gradient is needed")

        monkeypatch.setattr(torch.nn.functional, "max_pool2d", refuse)
    with torch.no_grad():
        activation = pool(leaf * 1.0)
    for out in (pool(x), activation, through_max_pool2d):
        assert torch.equal(out.nan_to_num(7.0), expected.nan_to_num(7.0)) and out.stride() == expected.stride()
    monkeypatch.undo()
    a, b = x.clone().nan_to_num(0.0).requires_grad_(), x.clone().nan_to_num(0.0).requires_grad_()
    weights = torch.randn(expected.shape, generator=g)
    (pool(a) * weights).sum().backward()
    (torch.nn.functional.max_pool2d(b, 2, ceil_mode=True) * weights).sum().backward()
    assert torch.equal(a.grad, b.grad)  # on ties the gradient goes to one element of the window, as max_pool2d's


def _plain_order(stack: ConvStack) -> list[torch.nn.Module]:
    return [layer for stage in stack for layer in stage]


def test_conv_stack_runs_each_relu_after_the_next_max_pool():
    """A stage's ReLU moves behind the max-pool that opens the next stage; the last one, and every ReLU of a
    stack without pools, stay where they are; the modules (and state-dict keys) are the plain sequence's."""
    pooled = ConvImageEncoder(DIM, 0, HEADS, image_size=16, in_chans=1, channels=(4, 8, 8), downsample="maxpool")
    kinds = [type(m).__name__ for m in pooled.backbone.execution_order()]
    conv_bn = ["Conv2d", "BatchNorm2d"]
    assert kinds == [*conv_bn, "HalvingMaxPool", "ReLU", *conv_bn, "HalvingMaxPool", "ReLU", *conv_bn, "ReLU"]
    assert sorted(map(id, pooled.backbone.execution_order())) == sorted(map(id, _plain_order(pooled.backbone)))
    strided = ConvImageEncoder(DIM, 0, HEADS, image_size=16, in_chans=1, channels=(4, 8), downsample="stride")
    assert strided.backbone.execution_order() == _plain_order(strided.backbone)


def test_norm_after_pool_normalises_the_pooled_map():
    """norm_after_pool: conv -> max-pool -> BatchNorm -> ReLU wherever a pool follows a stage (same modules and
    state-dict keys); the output is that composition, and the BatchNorm's statistics are the pooled map's."""
    kw = dict(image_size=16, in_chans=1, channels=(4, 8, 8), downsample="maxpool")
    enc = ConvImageEncoder(DIM, 0, HEADS, norm_after_pool=True, **kw).train()
    conv_pool_bn_relu = ["Conv2d", "HalvingMaxPool", "BatchNorm2d", "ReLU"]
    order = enc.backbone.execution_order()
    assert [type(m).__name__ for m in order] == [*conv_pool_bn_relu * 2, "Conv2d", "BatchNorm2d", "ReLU"]
    assert sorted(map(id, order)) == sorted(map(id, _plain_order(enc.backbone)))
    assert enc.state_dict().keys() == ConvImageEncoder(DIM, 0, HEADS, **kw).state_dict().keys()
    twin = ConvImageEncoder(DIM, 0, HEADS, norm_after_pool=True, **kw).train()
    twin.load_state_dict(enc.state_dict())
    (conv0, bn0, relu0), (pool1, conv1, bn1, relu1), (pool2, conv2, bn2, relu2) = (list(s) for s in enc.backbone)
    x = enc.normalise(_image_batch(n=4, size=16)["image"])
    pooled = pool1(conv0(x))
    expected = relu2(bn2(conv2(relu1(bn1(pool2(conv1(relu0(bn0(pooled)))))))))
    torch.testing.assert_close(twin.backbone(x), expected)
    first_norm = twin.backbone[0][1]  # its running mean after one training forward: momentum 0.1 from 0
    torch.testing.assert_close(first_norm.running_mean, 0.1 * pooled.mean(dim=(0, 2, 3)).detach())
    audio = ConvAudioEncoder(12, 32, DIM, 0, HEADS, channels=(4, 8, 8), norm_after_pool=True)
    kinds = [type(m).__name__ for m in audio.backbone.execution_order()]
    assert kinds == ["HalvingMaxPool", *conv_pool_bn_relu * 2, "Conv2d", "BatchNorm2d", "ReLU"]
    strided = ConvImageEncoder(DIM, 0, HEADS, **{**kw, "downsample": "stride"}, norm_after_pool=True)
    assert strided.backbone.execution_order() == _plain_order(strided.backbone)


@pytest.mark.parametrize("norm_after_pool", [True, False])
def test_norm_after_pool_reaches_the_encoders_from_the_config(norm_after_pool):
    """model.<image|audio>.norm_after_pool (true in conf/) reaches the CNN encoders; a timm encoder ignores it."""
    overrides = [f"model.{m}.norm_after_pool={norm_after_pool}" for m in ("image", "audio")]
    model = compose(overrides).model
    metas = {"image": {"size": 16, "channels": 1}, "audio": {"n_mels": 12, "max_frames": 32}}
    for modality in ("image", "audio"):
        assert build_encoder(modality, dict(model), metas[modality]).backbone.norm_after_pool is norm_after_pool
    assert compose().model.image.norm_after_pool and compose().model.audio.norm_after_pool
    # The config of a run from before the option (a model bundle's config.yaml) rebuilds that run's model.
    older = {k: v for k, v in dict(model.image).items() if k != "norm_after_pool"}
    assert not build_encoder("image", {**dict(model), "image": older}, metas["image"]).backbone.norm_after_pool
    timm = build_encoder("image", {**dict(model), "image": {**dict(model.image), "kind": "timm"}}, metas["image"])
    assert not hasattr(timm.backbone, "norm_after_pool")


@pytest.mark.parametrize("encoder", ["image", "audio"])
def test_relu_after_the_pool_gives_the_same_values_and_gradients_bit_for_bit(encoder, monkeypatch):
    """max(relu(x)) == relu(max(x)) and so are their gradients: in training mode (batch statistics, dropout off)
    the encoder's tokens, the input's gradient and every parameter's gradient equal the plain order's exactly."""

    def run() -> tuple[torch.Tensor, list[torch.Tensor]]:
        torch.manual_seed(0)
        if encoder == "image":
            enc = ConvImageEncoder(DIM, 1, HEADS, image_size=20, in_chans=1, channels=(4, 8, 8), grid=4).train()
            batch = _image_batch()
            tokens, _ = enc(batch)
        else:
            enc = ConvAudioEncoder(12, 32, DIM, 1, HEADS, channels=(4, 8, 8)).train()
            batch = _audio_batch([30, 17, 9, 24])
            batch["mel"].requires_grad_(True)
            tokens, _ = enc(batch)
        (tokens * torch.linspace(-1, 1, tokens.numel()).view_as(tokens)).sum().backward()
        grads = [p.grad.clone() for p in enc.parameters() if p.grad is not None]
        if encoder == "audio":
            grads.append(batch["mel"].grad.clone())
        return tokens.detach(), grads

    reordered, reordered_grads = run()
    monkeypatch.setattr(ConvStack, "execution_order", _plain_order)
    plain, plain_grads = run()
    assert torch.equal(reordered, plain)
    assert len(reordered_grads) == len(plain_grads) > 4
    assert all(torch.equal(a, b) for a, b in zip(reordered_grads, plain_grads, strict=True))


def test_grid_pool_max_keeps_each_cells_strongest_response():
    enc = ConvImageEncoder(DIM, 0, HEADS, image_size=16, in_chans=1, channels=(4, 8), grid=2, grid_pool="max").eval()
    image = _image_batch(n=2, size=16)["image"]
    feat = enc.backbone(enc.normalise(image))  # [2, 8, 8, 8]
    expected = torch.nn.functional.adaptive_max_pool2d(feat, 2).flatten(2).transpose(1, 2)
    torch.testing.assert_close(enc.pool(feat).flatten(2).transpose(1, 2), expected)
    assert not torch.allclose(expected, torch.nn.functional.adaptive_avg_pool2d(feat, 2).flatten(2).transpose(1, 2))
    with pytest.raises(ValueError, match="grid_pool must be one of"):
        ConvImageEncoder(DIM, 0, HEADS, image_size=16, in_chans=1, channels=(4, 8), grid_pool="median")


def test_image_standardisation_makes_brightness_and_contrast_irrelevant():
    enc = ConvImageEncoder(DIM, 0, HEADS, image_size=16, in_chans=1, channels=(4, 8)).eval()
    base = torch.randint(40, 120, (2, 1, 16, 16), dtype=torch.uint8)
    brighter = (base.float() * 2 + 10).to(torch.uint8)  # affine change of the grey values, no clipping
    present = torch.tensor([True, True])
    a, _ = enc({"image": base, "present": present})
    b, _ = enc({"image": brighter, "present": present})
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    dataset = ConvImageEncoder(DIM, 0, HEADS, image_size=16, in_chans=1, channels=(4, 8), standardise="dataset").eval()
    dataset.load_state_dict(enc.state_dict())
    c, _ = dataset({"image": base, "present": present})
    d, _ = dataset({"image": brighter, "present": present})
    assert not torch.allclose(c, d, atol=1e-3)  # the fixed statistics do see the change


def _ink_on_paper(n: int = 3, chans: int = 1, size: int = 16) -> torch.Tensor:
    """Light paper (200-230) with a dark stroke (10-40) inside, noisy, never at the image's mean."""
    g = torch.Generator().manual_seed(3)
    paper = torch.randint(200, 231, (n, chans, size, size), generator=g)
    ink = torch.randint(10, 41, (n, chans, size, size), generator=g)
    stroke = torch.zeros(size, size, dtype=torch.bool)
    stroke[3:-3, size // 2 - 1 : size // 2 + 2] = True
    stroke[size // 2, 4:-4] = True
    return torch.where(stroke, ink, paper).to(torch.uint8)


def test_canonical_polarity_reads_a_scan_and_its_negative_alike():
    paper = _ink_on_paper().float() / 255
    canon = canonical_polarity(paper, 0.8)
    torch.testing.assert_close(canon, 1 - paper)  # light border: inverted
    torch.testing.assert_close(canonical_polarity(1 - paper, 0.8), canon)  # the negative is left: the same input
    g = torch.Generator().manual_seed(4)
    photo = torch.rand(2, 3, 16, 16, generator=g)  # mixed tones everywhere, border included
    torch.testing.assert_close(canonical_polarity(photo, 0.8), photo)
    # a colour image: the grey level decides, every channel is inverted together
    colour = _ink_on_paper(chans=3).float() / 255
    torch.testing.assert_close(canonical_polarity(colour, 0.8), 1 - colour)


def test_canonical_polarity_takes_the_share_of_the_border():
    x = _ink_on_paper(n=1).float() / 255
    x[0, 0, 0, :6] = 0.0  # 6 of the border's 60 pixels dark: 90% light
    torch.testing.assert_close(canonical_polarity(x, 0.9), 1 - x)
    torch.testing.assert_close(canonical_polarity(x, 0.95), x)


def test_image_encoder_with_polarity_border_gives_a_scan_and_its_negative_the_same_tokens():
    kw = dict(image_size=16, in_chans=1, channels=(4, 8))
    enc = ConvImageEncoder(DIM, 0, HEADS, polarity_border=0.8, **kw).eval()
    scans = _ink_on_paper()
    present = torch.ones(3, dtype=torch.bool)
    a, _ = enc({"image": scans, "present": present})
    b, _ = enc({"image": 255 - scans, "present": present})
    torch.testing.assert_close(a, b)
    off = ConvImageEncoder(DIM, 0, HEADS, **kw).eval()
    off.load_state_dict(enc.state_dict())
    c, _ = off({"image": scans, "present": present})
    d, _ = off({"image": 255 - scans, "present": present})
    assert not torch.allclose(c, d, atol=1e-3)
    for share in (0.5, 1.2):
        with pytest.raises(ValueError, match=r"polarity_border must be in \(0.5, 1\]"):
            ConvImageEncoder(DIM, 0, HEADS, polarity_border=share, **kw)


def test_polarity_border_reaches_the_cnn_image_encoder_only():
    model, meta = dict(compose(["model.image.polarity_border=0.9"]).model), {"size": 16, "channels": 1}
    assert build_encoder("image", model, meta).polarity_border == 0.9
    assert compose().model.image.polarity_border is None  # off by default
    # The config of a run from before the option (a model bundle's config.yaml) rebuilds that run's model: off.
    older = {k: v for k, v in dict(model["image"]).items() if k != "polarity_border"}
    assert build_encoder("image", {**model, "image": older}, meta).polarity_border is None
    timm = build_encoder("image", {**model, "image": {**dict(model["image"]), "kind": "timm"}}, meta)
    assert not hasattr(timm, "polarity_border")


def test_image_encoder_rejects_the_wrong_shape():
    enc = ConvImageEncoder(DIM, 0, HEADS, image_size=16, in_chans=1, channels=(4, 8))
    with pytest.raises(ValueError, match="1x16x16"):
        enc(_image_batch(chans=3, size=16))


def _audio_batch(lengths: list[int], n_mels: int = 12, frames: int = 30) -> dict[str, torch.Tensor]:
    return audio_batch(lengths, n_mels, frames, generator=torch.Generator().manual_seed(1))


def _trained_batchnorm(module: torch.nn.Module) -> torch.nn.Module:
    """Non-zero BatchNorm statistics and shifts, as after training: BN(0) + ReLU is then not 0, so a padded
    frame's activation differs from a convolution's zero padding unless the encoder masks it."""
    g = torch.Generator().manual_seed(2)
    for m in module.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=g) * 2 - 1)
            m.bias.data.copy_(torch.rand(m.num_features, generator=g) * 2 - 1)
    return module.eval()


@pytest.mark.parametrize("standardise", ["dataset", "clip"])
@pytest.mark.parametrize("norm_after_pool", [False, True])
@pytest.mark.parametrize("extra_convs", [0, 1])
@pytest.mark.parametrize("downsample", ["stride", "maxpool"])
def test_audio_tokens_follow_time_and_padding_does_not_leak(downsample, extra_convs, norm_after_pool, standardise):
    enc = ConvAudioEncoder(
        n_mels=12,
        max_frames=40,
        dim=DIM,
        depth=1,
        num_heads=HEADS,
        channels=(4, 8),
        extra_convs=extra_convs,
        downsample=downsample,
        norm_after_pool=norm_after_pool,
        standardise=standardise,
    )
    _trained_batchnorm(enc)
    batch = _audio_batch([30, 9, 0])
    tokens, mask = enc(batch)
    assert enc.stride == 4 and tokens.shape == (3, 8, DIM)  # 30 frames rounded up to 32, one token per 4
    assert mask.sum(dim=1).tolist() == [8, 3, 0]  # 9 frames touch 3 tokens
    assert torch.count_nonzero(tokens[2]) == 0
    # The 9-frame clip alone (its own 12 frames) and in batches padded to 30 and 40 frames: same tokens.
    alone, alone_mask = enc(
        {"mel": batch["mel"][1:2, :, :9], "mask": batch["mask"][1:2, :9], "present": batch["present"][1:2]}
    )
    padded = {k: v for k, v in batch.items()}
    padded["mel"] = torch.nn.functional.pad(batch["mel"], (0, 10))
    padded["mask"] = torch.nn.functional.pad(batch["mask"], (0, 10))
    tokens2, mask2 = enc(padded)
    assert alone_mask.sum().item() == 3
    torch.testing.assert_close(tokens[1][mask[1]], alone[0][alone_mask[0]], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(tokens2[1][mask2[1]], alone[0][alone_mask[0]], atol=1e-5, rtol=1e-5)


def test_clip_standardisation_uses_each_clips_valid_frames_only():
    batch = _audio_batch([30, 9, 0])
    valid = batch["mask"].float()
    out = standardise_clips(batch["mel"] * 3 + 2 * valid[:, None], valid)
    for i, length in enumerate([30, 9]):
        clip = batch["mel"][i, :, :length] * 3 + 2
        expected = (clip - clip.mean()) / clip.std(unbiased=False)
        torch.testing.assert_close(out[i, :, :length], expected)
        assert torch.count_nonzero(out[i, :, length:]) == 0
    assert torch.count_nonzero(out[2]) == 0  # a clip without frames stays zero (and finite)
    flat = standardise_clips(torch.full((1, 12, 5), 4.0), torch.ones(1, 5))
    assert torch.count_nonzero(flat) == 0


def test_clip_standardisation_makes_gain_and_level_irrelevant():
    """A gain adds a constant to a clip's log-mel and its loudness range scales it: with standardise=clip the
    tokens stay the same; with the dataset's fixed statistics they change."""
    batch = _audio_batch([30, 17])
    louder = {**batch, "mel": (batch["mel"] * 1.7 + 3.0) * batch["mask"][:, None].float()}
    kw = {"n_mels": 12, "max_frames": 32, "dim": DIM, "depth": 1, "num_heads": HEADS, "channels": (4, 8)}
    clip = _trained_batchnorm(ConvAudioEncoder(**kw, standardise="clip"))
    torch.testing.assert_close(clip(louder)[0], clip(batch)[0], atol=1e-5, rtol=1e-5)
    dataset = _trained_batchnorm(ConvAudioEncoder(**kw, standardise="dataset"))
    dataset.load_state_dict(clip.state_dict())
    assert not torch.allclose(dataset(louder)[0], dataset(batch)[0], atol=1e-3)
    with pytest.raises(ValueError, match="model.audio.standardise"):
        ConvAudioEncoder(**kw, standardise="image")


def test_audio_standardisation_reaches_the_encoder_from_the_config():
    """model.audio.standardise (dataset in conf/) reaches the CNN audio encoder, and the config of a run from before
    the option (a model bundle's config.yaml, without the key) rebuilds that run's model; the image keeps its own."""
    meta = {"n_mels": 12, "max_frames": 32}
    assert build_encoder("audio", dict(compose().model), meta).standardise == "dataset"
    model = compose(["model.audio.standardise=clip"]).model
    assert build_encoder("audio", dict(model), meta).standardise == "clip"
    older = {k: v for k, v in dict(model.audio).items() if k != "standardise"}
    assert build_encoder("audio", {**dict(model), "audio": older}, meta).standardise == "dataset"
    assert build_encoder("image", dict(model), {"size": 16, "channels": 1}).standardise == "image"


def test_audio_encoder_rejects_too_many_frames():
    enc = ConvAudioEncoder(n_mels=12, max_frames=20, dim=DIM, depth=0, num_heads=HEADS, channels=(4, 8))
    with pytest.raises(ValueError, match="at most 20"):
        enc(_audio_batch([30], frames=30))


def test_text_tokens_do_not_depend_on_the_batch_padding():
    enc = ConvTextEncoder(vocab_size=50, dim=DIM, depth=1, num_heads=HEADS, max_len=12).eval()
    tokens = torch.tensor([[5, 6, 7, 8, 0, 0], [9, 10, 0, 0, 0, 0]])
    mask = tokens > 0
    out, out_mask = enc({"tokens": tokens, "mask": mask, "present": torch.tensor([True, True])})
    longer = torch.nn.functional.pad(tokens, (0, 6))
    out2, mask2 = enc({"tokens": longer, "mask": longer > 0, "present": torch.tensor([True, True])})
    torch.testing.assert_close(out2[:, :6][mask], out[mask], atol=1e-5, rtol=1e-5)
    _, absent_mask = enc({"tokens": tokens, "mask": mask, "present": torch.tensor([True, False])})
    assert absent_mask[0].tolist() == mask[0].tolist() and not absent_mask[1].any()


def test_text_kernel_must_be_odd():
    with pytest.raises(ValueError, match="odd"):
        ConvTextEncoder(vocab_size=10, dim=DIM, depth=0, num_heads=HEADS, max_len=4, kernel_size=2)


@pytest.mark.parametrize("encoder", ["image", "audio", "text"])
def test_freeze_stops_the_conv_stages(encoder):
    if encoder == "image":
        enc = ConvImageEncoder(DIM, 1, HEADS, image_size=16, in_chans=1, channels=(4, 8), freeze=True)
        frozen = enc.backbone
    elif encoder == "audio":
        enc = ConvAudioEncoder(
            n_mels=12, max_frames=20, dim=DIM, depth=1, num_heads=HEADS, channels=(4, 8), freeze=True
        )
        frozen = enc.backbone
    else:
        enc = ConvTextEncoder(vocab_size=10, dim=DIM, depth=1, num_heads=HEADS, max_len=4, freeze=True)
        frozen = enc
    assert not any(p.requires_grad for p in frozen.parameters())
    enc.train()
    assert not any(m.training for m in frozen.modules())
