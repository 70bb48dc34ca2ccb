"""Image: decode any common format and mode, normalise to RGB, resize, store uint8 CHW."""

from __future__ import annotations

import threading
import warnings
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from fusion.data.manifest import Record, RecordError, resolve_file


_PIXEL_LIMIT = threading.Lock()


class ImageTooLarge(RecordError):
    """The decompression-bomb guard refused the image from its header (more pixels than allowed)."""


def to_rgb(img: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """Any PIL mode to RGB: alpha composited on `background`, 16/32-bit scaled to 8-bit."""
    img = ImageOps.exif_transpose(img)
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
        img = Image.fromarray(arr.astype(np.uint8), mode="L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (*background, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return img.convert("RGB")


class ImageProcessor:
    """Decodes a record's image file into a fixed-size uint8 RGB tensor."""

    modality = "image"
    pixel_setting = "preprocess.image.max_pixels"  # named when the guard refuses an image (serving names its own)

    def __init__(self, cfg: Mapping[str, Any], root: Path, folder: str):
        self.cfg, self.root, self.folder = cfg, Path(root), folder

    def fit(self, records: list[Record]) -> None:
        """Nothing to learn from the training split."""

    def process(self, record: Record) -> dict[str, torch.Tensor]:
        size = int(self.cfg["size"])
        rgb = self.decode(resolve_file(self.root, record.image, self.folder))
        rgb = rgb.resize((size, size), Image.Resampling.BICUBIC)
        array = np.asarray(rgb, dtype=np.uint8).transpose(2, 0, 1)
        return {"image": torch.from_numpy(np.ascontiguousarray(array))}

    def decode(self, path: Path) -> Image.Image:
        """The file's image in RGB. PIL's decompression-bomb guard, at ``max_pixels``, rejects an image from
        its header alone (its warning range too), before any pixel is allocated."""
        max_pixels = int(self.cfg["max_pixels"])
        with _PIXEL_LIMIT:  # PIL's guard is a process-wide global: set for this decode only (threads of a server)
            limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, max_pixels
            try:
                return self._decode(path, max_pixels)
            finally:
                Image.MAX_IMAGE_PIXELS = limit

    def _decode(self, path: Path, max_pixels: int) -> Image.Image:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(path) as img:
                    img.load()  # decode fully now, so truncated files fail here
                    return to_rgb(img, tuple(self.cfg["background"]))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageTooLarge(f"image too large (decompression-bomb guard, {self.pixel_setting}={max_pixels}): "
                              f"{exc}") from None
        except UnidentifiedImageError:
            raise RecordError("not an image: no image format recognises the file's content") from None
        except Exception as exc:  # noqa: BLE001 - decoders raise many types on a damaged file; all mean "bad file"
            raise RecordError(f"cannot decode image: {type(exc).__name__}: {exc}") from None

    def meta(self) -> dict[str, Any]:
        return {"size": int(self.cfg["size"]), "channels": 3}

    def save(self, out_dir: Path) -> None:
        """No state beyond the parameters, which meta.json records."""

    def load(self, out_dir: Path) -> None:
        """Nothing fitted to restore."""
