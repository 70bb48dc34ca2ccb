"""Per-modality encoders: shapes, masks, timm backbones, local checkpoint loading."""

import pytest
import safetensors.torch
import timm
import torch

from fusion.models.encoders import AudioEncoder, ImageEncoder, TextEncoder

DIM, HEADS = 16, 2
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def image_encoder(name="resnet18", size=32, **kwargs):
    return ImageEncoder(name, DIM, depth=1, num_heads=HEADS, out_index=2, mean=MEAN, std=STD, image_size=size, **kwargs)


def test_text_encoder_shapes_and_mask():
    enc = TextEncoder(vocab_size=50, dim=DIM, depth=2, num_heads=HEADS, max_len=8, mlp_ratio=2, dropout=0.1)
    tokens = torch.randint(1, 50, (3, 6))
    mask = torch.ones(3, 6, dtype=torch.bool)
    mask[1, 4:] = False
    tokens[1, 4:] = 0
    present = torch.tensor([True, True, False])
    out, out_mask = enc({"tokens": tokens, "mask": mask, "present": present})
    assert out.shape == (3, 6, DIM)
    assert torch.equal(out_mask, mask & present[:, None])
    assert torch.isfinite(out).all()
    with pytest.raises(ValueError, match="max"):
        enc({"tokens": torch.zeros(1, 9, dtype=torch.long), "mask": torch.ones(1, 9, dtype=torch.bool),
             "present": torch.ones(1, dtype=torch.bool)})


def test_audio_encoder_patches_and_mask():
    enc = AudioEncoder(n_mels=8, dim=DIM, depth=1, num_heads=HEADS, patch_frames=4, max_frames=10).eval()
    mel = torch.randn(3, 8, 10)
    mask = torch.ones(3, 10, dtype=torch.bool)
    mask[1, 5:] = False  # patches 0,1 valid (frame 4 in patch 1), patch 2 invalid
    present = torch.tensor([True, True, False])
    out, out_mask = enc({"mel": mel, "mask": mask, "present": present})
    assert out.shape == (3, 3, DIM)  # ceil(10 / 4) patches
    assert out_mask.tolist() == [[True] * 3, [True, True, False], [False] * 3]
    # Padded frames inside a partially valid patch do not leak into it.
    mel2 = mel.clone()
    mel2[1, :, 5:] = 1e3
    out2, _ = enc({"mel": mel2, "mask": mask, "present": present})
    torch.testing.assert_close(out[1, :2], out2[1, :2])
    too_long = {"mel": torch.zeros(1, 8, 13), "mask": torch.ones(1, 13, dtype=torch.bool),
                "present": torch.ones(1, dtype=torch.bool)}
    with pytest.raises(ValueError, match="positional embedding"):
        enc(too_long)


@pytest.mark.parametrize("name", ["resnet18", "mobilenetv3_small_050"])
def test_image_encoder_two_timm_families(name):
    enc = image_encoder(name)
    expected_tokens = (32 // enc.backbone.feature_info.reduction()[-1]) ** 2
    assert enc.num_positions == expected_tokens
    image = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    present = torch.tensor([True, False, True])
    out, mask = enc({"image": image, "present": present})
    assert out.shape == (3, expected_tokens, DIM)
    assert mask.shape == (3, expected_tokens) and torch.equal(mask, present[:, None].expand_as(mask))
    assert (out[1] == 0).all() and torch.isfinite(out).all()
    out.sum().backward()
    trainable = [p for p in enc.backbone.parameters() if p.requires_grad]
    assert trainable and all(p.grad is not None for p in trainable)
    assert all(p.grad is None for p in enc.backbone.parameters() if not p.requires_grad)
    with pytest.raises(ValueError, match="32x32"):
        enc({"image": torch.zeros(1, 3, 48, 48, dtype=torch.uint8), "present": torch.ones(1, dtype=torch.bool)})


def test_image_encoder_absent_images_stay_out_of_batchnorm():
    enc = image_encoder()
    image = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    image2 = image.clone()
    image2[1] = 255
    present = torch.tensor([True, False, True])
    out, _ = enc({"image": image, "present": present})  # train mode: batch statistics
    out2, _ = enc({"image": image2, "present": present})
    torch.testing.assert_close(out, out2)
    running = {k: v.clone() for k, v in enc.backbone.state_dict().items() if "running" in k}
    enc.zero_grad(set_to_none=True)
    none, mask = enc({"image": image, "present": torch.zeros(3, dtype=torch.bool)})
    assert none.shape == out.shape and (none == 0).all() and not mask.any()
    assert all(torch.equal(v, enc.backbone.state_dict()[k]) for k, v in running.items())
    none.sum().backward()  # all parameters stay in the graph (DDP), with zero gradients
    assert all(p.grad is not None and (p.grad == 0).all() for p in enc.backbone.parameters())


def test_image_pretrained_without_checkpoint_is_rejected():
    with pytest.raises(ValueError, match="checkpoint_path"):
        image_encoder(pretrained=True)


def test_missing_checkpoint_names_config_key(tmp_path):
    path = tmp_path / "nope.safetensors"
    with pytest.raises(FileNotFoundError, match="model.image.checkpoint_path") as err:
        image_encoder(pretrained=True, checkpoint_path=str(path))
    assert str(path) in str(err.value)


@pytest.mark.parametrize("fmt", ["safetensors", "torch"])
def test_loads_local_backbone_checkpoint(tmp_path, fmt):
    source = timm.create_model("resnet18", pretrained=False, features_only=True, out_indices=(2,))
    state = {k: v.clone() for k, v in source.state_dict().items()}
    path = tmp_path / f"backbone.{'safetensors' if fmt == 'safetensors' else 'pth'}"
    if fmt == "safetensors":
        safetensors.torch.save_file(state, str(path))
    else:
        torch.save(state, path)
    enc = image_encoder(pretrained=True, checkpoint_path=str(path))
    loaded = enc.backbone.state_dict()
    assert loaded.keys() == state.keys()
    for k, v in state.items():
        assert torch.equal(loaded[k], v), k
    assert not torch.equal(image_encoder().backbone.state_dict()["conv1.weight"], state["conv1.weight"])


def test_loads_full_classifier_checkpoint(tmp_path):
    """A full timm checkpoint (head and later stages included, nested under a key prefix, without BatchNorm
    step counters) fills the truncated backbone."""
    full = timm.create_model("mobilenetv3_small_050", pretrained=False, num_classes=7)
    path = tmp_path / "full.pth"
    state = {f"encoder.backbone.{k}": v for k, v in full.state_dict().items() if "num_batches_tracked" not in k}
    torch.save({"state_dict": state}, path)
    enc = image_encoder("mobilenetv3_small_050", checkpoint_path=str(path))
    reference = full.state_dict()
    for k, v in enc.backbone.state_dict().items():
        if "num_batches_tracked" not in k:
            assert torch.equal(v, reference[k]), k


def test_mismatched_checkpoint_is_rejected(tmp_path):
    path = tmp_path / "other.safetensors"
    other = timm.create_model("mobilenetv3_small_050", pretrained=False, features_only=True, out_indices=(2,))
    safetensors.torch.save_file({k: v.contiguous() for k, v in other.state_dict().items()}, str(path))
    with pytest.raises(RuntimeError, match="does not match"):
        image_encoder("resnet18", checkpoint_path=str(path))
