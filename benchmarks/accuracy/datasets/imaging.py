"""Realistic image damage and encoding, shared by the datasets: blur, occlusion, inverted contrast, noise, low
contrast, then grayscale or RGB, PNG or JPEG (at a random quality).

A dataset renders a clean picture at the record's size; `damage` and `encode` turn it into the bytes of a file
as a camera, a scanner or a careless export would have left it.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

BLUR_PROBABILITY = 0.35
BLUR_RADIUS_PER_32PX = (0.4, 1.6)  # Gaussian blur radius, scaled with the image's shorter side / 32
OCCLUSION_PROBABILITY = 0.25
OCCLUSION_AREA = (0.10, 0.35)  # share of the image an occluding patch covers
OCCLUSION_ASPECT = (0.5, 2.0)  # its height / width
OCCLUSION_FLAT_PROBABILITY = 0.5  # a flat colour (else noise)
INVERT_PROBABILITY = 0.20
NOISE_PROBABILITY = 0.50
NOISE_STD = (4.0, 28.0)  # Gaussian pixel noise, on the 0-255 scale
LOW_CONTRAST_PROBABILITY = 0.20
LOW_CONTRAST_KEEP = (0.35, 0.7)  # share of the contrast (distance to the mean) kept
GRAYSCALE_PROBABILITY = 0.40
JPEG_PROBABILITY = 0.50
JPEG_QUALITY = (35, 90)
PNG_COMPRESS_LEVEL = 6
PAPER_LEVEL = (170, 255)  # ink_on_paper: RGB range of the paper
INK_LEVEL = (0, 90)  # and of the ink


@dataclass(frozen=True)
class ImageFile:
    """An encoded image: its bytes and file extension, and what was done to it (for dataset.json)."""

    data: bytes
    extension: str
    mode: str
    size: tuple[int, int]
    damage: tuple[str, ...]


def damage(rng: np.random.Generator, image: Image.Image) -> tuple[Image.Image, list[str]]:
    """The image with each kind of damage applied with its probability, and the names of those applied."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    applied: list[str] = []
    if rng.random() < BLUR_PROBABILITY:
        radius = rng.uniform(*BLUR_RADIUS_PER_32PX) * min(image.size) / 32
        pixels = np.asarray(Image.fromarray(_bytes(pixels)).filter(ImageFilter.GaussianBlur(radius)), np.float32)
        applied.append("blur")
    if rng.random() < OCCLUSION_PROBABILITY:
        pixels = _occlude(rng, pixels)
        applied.append("occlusion")
    if rng.random() < LOW_CONTRAST_PROBABILITY:
        mean = pixels.mean()
        pixels = mean + (pixels - mean) * rng.uniform(*LOW_CONTRAST_KEEP)
        applied.append("low_contrast")
    if rng.random() < INVERT_PROBABILITY:
        pixels = 255.0 - pixels
        applied.append("inverted")
    if rng.random() < NOISE_PROBABILITY:
        pixels = pixels + rng.normal(0.0, rng.uniform(*NOISE_STD), size=pixels.shape)
        applied.append("noise")
    return Image.fromarray(_bytes(pixels)), applied


def _occlude(rng: np.random.Generator, pixels: np.ndarray) -> np.ndarray:
    """Cover a random rectangle with a flat random colour or with noise (a finger, a sticker, a torn corner)."""
    height, width = pixels.shape[:2]
    area = rng.uniform(*OCCLUSION_AREA) * height * width
    aspect = rng.uniform(*OCCLUSION_ASPECT)
    h = int(np.clip(round(np.sqrt(area / aspect)), 1, height))
    w = int(np.clip(round(area / max(h, 1)), 1, width))
    top, left = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
    out = pixels.copy()
    if rng.random() < OCCLUSION_FLAT_PROBABILITY:
        out[top : top + h, left : left + w] = rng.uniform(0, 255, size=3)
    else:
        out[top : top + h, left : left + w] = rng.uniform(0, 255, size=(h, w, 3))
    return out


def _bytes(pixels: np.ndarray) -> np.ndarray:
    return np.clip(np.round(pixels), 0, 255).astype(np.uint8)


def encode(rng: np.random.Generator, image: Image.Image, damage_names: list[str]) -> ImageFile:
    """Grayscale or RGB, then PNG or JPEG, drawn at random."""
    mode = "L" if rng.random() < GRAYSCALE_PROBABILITY else "RGB"
    converted = image.convert(mode)
    buffer = io.BytesIO()
    if rng.random() < JPEG_PROBABILITY:
        quality = int(rng.integers(JPEG_QUALITY[0], JPEG_QUALITY[1] + 1))
        converted.save(buffer, format="JPEG", quality=quality, optimize=False, progressive=False)
        extension = "jpg"
    else:
        converted.save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL, optimize=False)
        extension = "png"
    return ImageFile(buffer.getvalue(), extension, mode, converted.size, tuple(damage_names))


def render_file(rng: np.random.Generator, image: Image.Image) -> ImageFile:
    """Damage a clean picture and encode it."""
    damaged, applied = damage(rng, image)
    return encode(rng, damaged, applied)


def random_size(rng: np.random.Generator, side_px: tuple[int, int], aspect: tuple[float, float]) -> tuple[int, int]:
    """A random (width, height): the shorter side drawn from `side_px`, width / height from `aspect`."""
    side = int(rng.integers(side_px[0], side_px[1] + 1))
    ratio = rng.uniform(*aspect)
    return (round(side * ratio), side) if ratio >= 1 else (side, round(side / ratio))


def ink_on_paper(rng: np.random.Generator, ink: np.ndarray) -> Image.Image:
    """An RGB picture of `ink` (float [0, 1] coverage, H×W) in a random dark colour on random light paper."""
    paper = rng.uniform(*PAPER_LEVEL, size=3)
    colour = rng.uniform(*INK_LEVEL, size=3)
    coverage = np.clip(ink, 0.0, 1.0)[..., None]
    return Image.fromarray(_bytes(paper * (1 - coverage) + colour * coverage))
