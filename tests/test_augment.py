"""Training augmentation on batches: seeded, shape- and mask-preserving, absent samples untouched."""

from __future__ import annotations

import math

import pytest
import torch

from fusion.data.augment import AudioAugment, ImageAugment, TextAugment, build_augment
from tests.helpers.batches import audio_batch


def _image(n: int = 6) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    image = torch.randint(0, 256, (n, 1, 16, 16), generator=g, dtype=torch.uint8)
    present = torch.ones(n, dtype=torch.bool)
    present[1] = False
    image[1] = 0
    return {"image": image, "present": present}


def test_image_augment_is_seeded_and_keeps_absent_images():
    batch = _image()
    torch.manual_seed(3)
    a = ImageAugment(p=1.0)(batch)["image"]
    torch.manual_seed(3)
    b = ImageAugment(p=1.0)(batch)["image"]
    assert torch.equal(a, b) and a.dtype == torch.uint8 and a.shape == batch["image"].shape
    assert torch.count_nonzero(a[1]) == 0
    assert not torch.equal(a[0], batch["image"][0])


def test_identity_image_augment_changes_nothing():
    batch = _image()
    same = ImageAugment(p=1.0, degrees=0.0, scale=(1.0, 1.0), translate=0.0, contrast=0.0)(batch)["image"]
    assert (same.int() - batch["image"].int()).abs().max() <= 1  # bilinear resampling on the grid itself


def test_image_augment_with_p_zero_is_the_identity():
    batch = _image()
    assert ImageAugment(p=0.0)(batch)["image"] is batch["image"]


def test_invert_flips_present_images_only_at_its_rate():
    batch = _image(200)
    flipped = ImageAugment(p=0.0, invert=1.0)(batch)["image"]
    present = batch["present"]
    assert torch.equal(flipped[present], 255 - batch["image"][present])
    assert torch.count_nonzero(flipped[1]) == 0  # an absent image stays empty
    torch.manual_seed(0)
    some = ImageAugment(p=0.0, invert=0.25)(batch)["image"]
    changed = (some != batch["image"]).flatten(1).any(dim=1)
    assert 0.15 < changed.float().mean() < 0.35 and not changed[~present].any()


@pytest.mark.parametrize("kind", ["image", "audio"])
def test_a_sample_is_augmented_the_same_whichever_others_are_chosen(kind):
    """Every sample draws its parameters whether chosen or not, and only the chosen ones are transformed: with
    p=0.5 the chosen samples equal their p=1 versions, the others are the input, and so is the next random
    draw (the stream does not depend on p)."""
    if kind == "image":
        batch, key, make = _image(64), "image", lambda p: ImageAugment(p=p)
    else:
        batch = audio_batch([20, 12, 0, 5, 17, 9, 20, 3] * 8, n_mels=10, frames=20)
        key, make = "mel", lambda p: AudioAugment(p=p)
    torch.manual_seed(5)
    chosen = (torch.rand(len(batch["present"])) < 0.5) & batch["present"]
    outputs = {}
    for p in (0.5, 1.0):
        torch.manual_seed(5)
        outputs[p] = (make(p)(batch), torch.rand(4))
    (some, after_some), (every, after_every) = outputs[0.5], outputs[1.0]
    assert 8 < int(chosen.sum()) < 56
    for name in some:
        assert torch.equal(some[name][chosen], every[name][chosen]), name
        assert torch.equal(some[name][~chosen], batch[name][~chosen]), name
    assert not torch.equal(some[key][chosen], batch[key][chosen])
    assert torch.equal(after_some, after_every)


def _audio() -> dict[str, torch.Tensor]:
    return audio_batch([20, 12, 0, 5], n_mels=10, frames=20)


def test_audio_shift_moves_content_and_mask_together():
    batch = _audio()
    torch.manual_seed(0)
    out = AudioAugment(p=1.0, shift=0.3, gain_db=0.0, freq_masks=0, time_masks=0)(batch)
    # Zero outside the mask, and the valid frames are a shifted copy of the input's.
    assert torch.count_nonzero(out["mel"] * ~out["mask"][:, None, :]) == 0
    for i in (0, 1, 3):
        got = out["mel"][i][:, out["mask"][i]]
        source = batch["mel"][i][:, batch["mask"][i]]
        assert got.shape[1] <= source.shape[1]
        assert any(torch.equal(got, source[:, k : k + got.shape[1]]) for k in range(source.shape[1] - got.shape[1] + 1))
    assert torch.count_nonzero(out["mel"][2]) == 0 and not out["mask"][2].any()


def test_audio_gain_is_a_constant_in_standardised_log_units():
    batch = _audio()
    torch.manual_seed(1)
    out = AudioAugment(p=1.0, shift=0.0, gain_db=10.0, freq_masks=0, time_masks=0, log_mel_std=2.0)(batch)
    diff = (out["mel"] - batch["mel"])[0]
    assert torch.allclose(diff, diff[0, 0].expand_as(diff), atol=1e-5)
    assert diff.abs().max() <= 10.0 * 0.2302585 / 2.0 + 1e-5  # 10 dB = 2.30 nepers, over the std


def test_spec_masks_zero_whole_bins_and_frames():
    batch = _audio()
    torch.manual_seed(2)
    out = AudioAugment(p=1.0, shift=0.0, gain_db=0.0, freq_masks=1, freq_width=3, time_masks=0)(batch)
    zero_rows = (out["mel"][0] == 0).all(dim=1).sum()
    assert 0 <= zero_rows <= 3 and torch.equal(out["mask"], batch["mask"])


def _noise_only(**options) -> AudioAugment:
    """Only the noise: no shift, gain or masks, every present clip noised."""
    return AudioAugment(p=0.0, noise=1.0, **options)


def test_audio_noise_off_draws_nothing_and_changes_nothing():
    """noise=0 (the bit-identical path of runs before the option): the only draw is the p gate's."""
    batch = _audio()
    torch.manual_seed(3)
    quiet = AudioAugment(p=0.0, noise=0.0)(batch)
    after = torch.rand(4)
    torch.manual_seed(3)
    torch.rand(len(batch["mel"]))
    assert torch.equal(after, torch.rand(4))
    for name in batch:
        assert torch.equal(quiet[name], batch[name])


def test_audio_noise_adds_its_power_at_the_snr_over_valid_frames_only():
    """With no tilt and no scatter every valid cell's power rises by the clip's mean power x 10^(-snr/10);
    padding, absent clips and the mask are left as they are."""
    batch = _audio()
    mean, std = -4.0, 2.5
    torch.manual_seed(4)
    flat = {"noise_snr_db": (10.0, 10.0), "noise_tilt_db": 0.0, "noise_grain": 0.0}
    out = _noise_only(**flat, log_mel_mean=mean, log_mel_std=std)(batch)
    assert torch.equal(out["mask"], batch["mask"])
    for i in range(len(batch["mel"])):
        valid = batch["mask"][i]
        if not valid.any():
            assert torch.equal(out["mel"][i], batch["mel"][i])
            continue
        power = torch.exp(batch["mel"][i][:, valid].double() * std + mean)
        expected = (torch.log(power + power.mean() * 0.1) - mean) / std
        assert torch.allclose(out["mel"][i][:, valid].double(), expected, atol=1e-5)
        assert torch.equal(out["mel"][i][:, ~valid], batch["mel"][i][:, ~valid])
        assert (out["mel"][i][:, valid] > batch["mel"][i][:, valid]).all()


def test_audio_noise_tilt_and_scatter_shape_its_spectrum():
    """On a clip of power 1 in every cell at 0 dB SNR the added power is the noise itself: its mean log power per
    bin is a straight line rising or falling by at most noise_tilt_db from the lowest bin to the highest, and it
    scatters from cell to cell by noise_grain (natural-log std)."""
    bins, frames, tilt_db, grain = 16, 4000, 12.0, 0.4
    flat = {"mel": torch.zeros(1, bins, frames), "mask": torch.ones(1, frames, dtype=torch.bool)}
    flat["present"] = torch.tensor([True])
    slopes = []
    for seed in range(4):
        torch.manual_seed(seed)
        out = _noise_only(noise_snr_db=(0.0, 0.0), noise_tilt_db=tilt_db, noise_grain=grain)(flat)["mel"][0]
        added = torch.log(torch.expm1(out.double()))  # log of the noise power in each cell
        per_bin = added.mean(dim=1)
        slopes.append(float(per_bin[-1] - per_bin[0]) * 10.0 / math.log(10.0))
        line = torch.linspace(float(per_bin[0]), float(per_bin[-1]), bins, dtype=torch.float64)
        assert torch.allclose(per_bin, line, atol=0.05)
        assert abs(float((added - per_bin[:, None]).std()) - grain) < 0.02
    assert all(abs(slope) <= tilt_db + 0.5 for slope in slopes)
    assert len({round(slope) for slope in slopes}) > 1  # the tilt is drawn per clip


def test_text_augment_keeps_one_token_and_only_swaps_valid_tokens():
    tokens = torch.tensor([[4, 5, 6, 7, 0, 0], [8, 0, 0, 0, 0, 0]])
    batch = {"tokens": tokens, "mask": tokens > 0, "present": torch.tensor([True, True])}
    torch.manual_seed(0)
    out = TextAugment(token_dropout=0.99, swap=0.0)(batch)
    assert out["mask"].sum(dim=1).tolist() == [1, 1]
    assert not (out["mask"] & ~batch["mask"]).any()
    torch.manual_seed(0)
    swapped = TextAugment(token_dropout=0.0, swap=1.0)(batch)
    assert sorted(swapped["tokens"][0, :4].tolist()) == [4, 5, 6, 7] and swapped["tokens"][0, :4].tolist() != [
        4,
        5,
        6,
        7,
    ]
    assert swapped["tokens"][:, 4:].eq(0).all() and swapped["tokens"][1].tolist() == tokens[1].tolist()


def test_build_augment_reads_the_config_and_the_audio_statistics():
    metas = {"image": {}, "audio": {"log_mel_mean": -6.0, "log_mel_std": 3.0}, "text": {}}
    assert build_augment({"enabled": False, "image": {}}, metas) is None
    augment = build_augment({"enabled": True, "image": {"scale": [0.8, 1.2]}, "audio": {}, "text": None}, metas)
    assert set(augment.modalities) == {"image", "audio"}
    assert augment.modalities["image"].scale == (0.8, 1.2) and augment.modalities["audio"].log_mel_std == 3.0
    assert augment.modalities["audio"].log_mel_mean == -6.0
    noisy = build_augment({"enabled": True, "audio": {"noise": 0.5, "noise_snr_db": [-5, 5]}}, metas)
    assert noisy.modalities["audio"].noise_snr_db == (-5, 5)
    featured = build_augment({"enabled": True, "image": {}, "audio": {}}, {**metas, "image": {"kind": "features"}})
    assert set(featured.modalities) == {"audio"}
    with pytest.raises(TypeError):
        build_augment({"enabled": True, "image": {"unknown_knob": 1}}, metas)
