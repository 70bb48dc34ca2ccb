"""Image preprocessing: aspect-preserving resize with a border-coloured margin, grey detection."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from fusion.data.manifest import Record
from fusion.preprocess.image import ImageProcessor, fit_square, is_grey

CFG = {
    "size": 16,
    "resize": "pad",
    "channels": "auto",
    "grey_probe": 10,
    "grey_tolerance": 8,
    "max_pixels": 10_000_000,
    "background": [255, 255, 255],
}


def test_fit_square_keeps_the_aspect_and_fills_with_the_border_colour():
    img = Image.new("RGB", (40, 20), (10, 20, 30))
    img.paste((200, 0, 0), (15, 5, 25, 15))  # a red square inside, away from the border
    out = np.asarray(fit_square(img, 16))
    assert out.shape == (16, 16, 3)
    assert (out[:4] == (10, 20, 30)).all() and (out[-4:] == (10, 20, 30)).all()  # margins: the border colour
    red = (out[..., 0] > 150) & (out[..., 1] < 60)
    rows, cols = np.nonzero(red)
    assert abs((rows.max() - rows.min()) - (cols.max() - cols.min())) <= 1  # the square stays a square


def test_is_grey_tolerates_jpeg_chroma_noise_only():
    grey = Image.fromarray(np.stack([np.full((4, 4), 100)] * 3, axis=-1).astype(np.uint8))
    noisy = np.asarray(grey).copy()
    noisy[0, 0] = (100, 104, 98)
    assert is_grey(grey, 8) and is_grey(Image.fromarray(noisy), 8)
    noisy[1, 1] = (100, 160, 100)
    assert not is_grey(Image.fromarray(noisy), 8)


def _write(root, name, img):
    (root / "image").mkdir(exist_ok=True)
    img.save(root / "image" / name)
    return Record(name, "a", "train", 0, image=f"image/{name}")


@pytest.mark.parametrize("colour,channels", [(False, 1), (True, 3)])
def test_channels_auto_stores_grey_when_every_probed_image_is_grey(tmp_path, colour, channels):
    records = [
        _write(tmp_path, "a.png", Image.new("L", (20, 10), 80)),
        _write(tmp_path, "b.jpg", Image.new("RGB", (10, 30), (120, 120, 120) if not colour else (200, 30, 30))),
    ]
    processor = ImageProcessor(CFG, tmp_path, "image")
    processor.fit(records)
    assert processor.meta()["channels"] == channels
    item = processor.process(records[0])["image"]
    assert item.shape == (channels, 16, 16) and item.dtype.is_floating_point is False
    (tmp_path / "meta.json").write_text(json.dumps(processor.meta()))
    restored = ImageProcessor(CFG, tmp_path, "image")
    restored.load(tmp_path)  # what serving and the robustness stage do
    assert restored.process(records[1])["image"].shape == (channels, 16, 16)


def test_bad_settings_name_the_key():
    with pytest.raises(ValueError, match="preprocess.image.resize"):
        ImageProcessor({**CFG, "resize": "crop"}, ".", "image")
    with pytest.raises(ValueError, match="preprocess.image.channels"):
        ImageProcessor({**CFG, "channels": 2}, ".", "image")
