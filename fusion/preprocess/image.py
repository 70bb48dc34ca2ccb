"""Image: decode any common format and mode, normalise to RGB (or grey), resize, store uint8 CHW."""

from __future__ import annotations

import json
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


RESIZE_MODES = ("pad", "stretch")
CHANNELS = ("auto", 1, 3)


def is_grey(rgb: Image.Image, tolerance: int) -> bool:
    """Whether every pixel's R, G and B differ by at most ``tolerance`` (JPEG chroma noise of a grey scan)."""
    array = np.asarray(rgb, dtype=np.int16)
    return int((array.max(axis=2) - array.min(axis=2)).max(initial=0)) <= tolerance


def fit_square(img: Image.Image, size: int) -> Image.Image:
    """Resize keeping the aspect ratio so the longer side is ``size``, then centre it on a ``size`` square
    filled with the mean colour of the image's border (a dark scan gets a dark margin, a white page a white one)."""
    width, height = img.size
    scale = size / max(width, height)
    new = (max(1, round(width * scale)), max(1, round(height * scale)))
    resized = img.resize(new, Image.Resampling.BICUBIC)
    array = np.asarray(img, dtype=np.float64).reshape(height, width, -1)
    border = np.concatenate([array[0], array[-1], array[:, 0], array[:, -1]]).mean(axis=0)
    fill = tuple(int(round(v)) for v in border)
    canvas = Image.new(img.mode, (size, size), fill if len(fill) > 1 else fill[0])
    canvas.paste(resized, ((size - new[0]) // 2, (size - new[1]) // 2))
    return canvas


class ImageProcessor:
    """Decodes a record's image file into a fixed-size uint8 tensor [C, size, size].

    ``resize: pad`` keeps the aspect ratio (letterbox on the border colour), ``stretch`` squashes to the
    square. ``channels: auto`` stores 1 grey channel when the first ``grey_probe`` training images are all
    grey (scans, X-rays, spectrogram pictures: a third of the memory and a model that need not learn that
    R = G = B), else RGB; 1 or 3 force it."""

    modality = "image"
    pixel_setting = "preprocess.image.max_pixels"  # named when the guard refuses an image (serving names its own)

    def __init__(self, cfg: Mapping[str, Any], root: Path, folder: str):
        self.cfg, self.root, self.folder = cfg, Path(root), folder
        if cfg.get("resize", "stretch") not in RESIZE_MODES:
            raise ValueError(f"preprocess.image.resize must be one of {list(RESIZE_MODES)}, got {cfg['resize']!r}")
        if cfg.get("channels", 3) not in CHANNELS:
            raise ValueError(f"preprocess.image.channels must be one of {list(CHANNELS)}, got {cfg['channels']!r}")
        self.channels = 3 if cfg.get("channels", 3) == "auto" else int(cfg.get("channels", 3))

    def fit(self, records: list[Record]) -> None:
        """``channels: auto``: grey if the probed training images are all grey (unreadable ones are skipped:
        they are rejected with their reason when processed)."""
        if self.cfg.get("channels", 3) != "auto":
            return
        tolerance, probed = int(self.cfg["grey_tolerance"]), []
        for record in records[: int(self.cfg["grey_probe"])]:
            try:
                probed.append(is_grey(self.decode(resolve_file(self.root, record.image, self.folder)), tolerance))
            except RecordError:
                continue
        self.channels = 1 if probed and all(probed) else 3

    def process(self, record: Record) -> dict[str, torch.Tensor]:
        return {"image": self.tensor(self.decode(resolve_file(self.root, record.image, self.folder)))}

    def tensor(self, rgb: Image.Image) -> torch.Tensor:
        """A decoded RGB image -> uint8 [channels, size, size] as stored."""
        size = int(self.cfg["size"])
        img = rgb.convert("L") if self.channels == 1 else rgb
        if self.cfg.get("resize", "stretch") == "pad":
            img = fit_square(img, size)
        else:
            img = img.resize((size, size), Image.Resampling.BICUBIC)
        array = np.asarray(img, dtype=np.uint8).reshape(size, size, -1).transpose(2, 0, 1)
        return torch.from_numpy(array.copy())  # a writable, contiguous copy (PIL's buffer is read-only)

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
            raise ImageTooLarge(
                f"image too large (decompression-bomb guard, {self.pixel_setting}={max_pixels}): {exc}"
            ) from None
        except UnidentifiedImageError:
            raise RecordError("not an image: no image format recognises the file's content") from None
        except Exception as exc:  # noqa: BLE001 - decoders raise many types on a damaged file; all mean "bad file"
            raise RecordError(f"cannot decode image: {type(exc).__name__}: {exc}") from None

    def meta(self) -> dict[str, Any]:
        return {"size": int(self.cfg["size"]), "channels": self.channels}

    def save(self, out_dir: Path) -> None:
        """No state beyond the parameters and the channel count, which meta.json records."""

    def load(self, out_dir: Path) -> None:
        """Restore the fitted channel count from ``out_dir``/meta.json."""
        meta = json.loads((Path(out_dir) / "meta.json").read_text(encoding="utf-8"))
        self.channels = int(meta.get("channels", 3))
