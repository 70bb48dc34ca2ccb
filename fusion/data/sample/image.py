"""Image rendering and encoding: a planned image becomes a shape, an occluded shape or clutter on a textured
background, saved as PNG or JPEG with fixed encoder settings."""

from __future__ import annotations

import io
import math
from typing import Mapping

import numpy as np
from PIL import Image, ImageDraw

from fusion.data.sample.rng import _PURPOSE_RECORD, _STREAM_IMAGE, _randint, _rng, _uniform


def _luma(rgb) -> float:
    """ITU-R 601 luminance (what Pillow uses for RGB -> L)."""
    r, g, b = rgb
    return 0.299 * r + 0.587 * g + 0.114 * b


def _contrasting_colour(rng: np.random.Generator, bg, im: Mapping) -> tuple[int, int, int]:
    """Random colour whose luminance differs from the background by >= min_contrast."""
    target = float(im["min_contrast"])
    for _ in range(int(im["contrast_tries"])):
        col = rng.integers(0, 256, size=3)
        if abs(_luma(col) - _luma(bg)) >= target:
            return tuple(int(v) for v in col)
    return (0, 0, 0) if _luma(bg) >= 128 else (255, 255, 255)


def _background(rng: np.random.Generator, w: int, h: int, im: Mapping) -> tuple[np.ndarray, np.ndarray]:
    """Noisy textured background (uint8 HxWx3) and its base colour."""
    base = rng.integers(0, 256, size=3).astype(np.float32)
    cx, cy = _randint(rng, im["texture_cells"]), _randint(rng, im["texture_cells"])
    coarse = Image.fromarray(rng.integers(0, 256, size=(cy, cx, 3), dtype=np.uint8), "RGB")
    texture = np.asarray(coarse.resize((w, h), Image.Resampling.BILINEAR), dtype=np.float32)
    texture = (texture / 127.5 - 1.0) * float(im["texture_strength"])
    noise = rng.normal(0.0, float(im["noise_std"]), size=(h, w, 3)).astype(np.float32)
    pixels = np.clip(base + texture + noise, 0, 255).astype(np.uint8)
    return pixels, base


def _rotate(points: np.ndarray, angle: float, cx: float, cy: float) -> list[tuple[float, float]]:
    """Rotate (N, 2) points about the origin by ``angle`` and move them to (cx, cy)."""
    ca, sa = math.cos(angle), math.sin(angle)
    rot = points @ np.array([[ca, sa], [-sa, ca]])
    return [(float(x + cx), float(y + cy)) for x, y in rot]


def _draw_circle(draw, cx, cy, r, angle, colour, im):
    """Filled disc of radius r."""
    draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)


def _draw_square(draw, cx, cy, r, angle, colour, im):
    """Filled square inscribed in the circle of radius r, rotated."""
    a = r / math.sqrt(2.0)
    pts = np.array([[-a, -a], [a, -a], [a, a], [-a, a]])
    draw.polygon(_rotate(pts, angle, cx, cy), fill=colour)


def _draw_triangle(draw, cx, cy, r, angle, colour, im):
    """Filled equilateral triangle inscribed in the circle of radius r, rotated."""
    t = np.deg2rad([90.0, 210.0, 330.0])
    pts = np.stack([r * np.cos(t), r * np.sin(t)], axis=1)
    draw.polygon(_rotate(pts, angle, cx, cy), fill=colour)


def _draw_cross(draw, cx, cy, r, angle, colour, im):
    """Plus sign with arms reaching r and thickness cross_arm_frac * 2r, rotated."""
    t = max(1.0, float(im["cross_arm_frac"]) * r)  # half thickness = frac * extent / 2
    pts = np.array(
        [[t, r], [t, t], [r, t], [r, -t], [t, -t], [t, -r], [-t, -r], [-t, -t], [-r, -t], [-r, t], [-t, t], [-t, r]]
    )
    draw.polygon(_rotate(pts, angle, cx, cy), fill=colour)


def _draw_ring(draw, cx, cy, r, angle, colour, im):
    """Annulus of outer radius r and width ring_width_frac * 2r."""
    width = max(1, int(round(float(im["ring_width_frac"]) * 2 * r)))
    draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=colour, width=width)


_SHAPE_DRAWERS = {
    "circle": _draw_circle,
    "square": _draw_square,
    "triangle": _draw_triangle,
    "cross": _draw_cross,
    "ring": _draw_ring,
}


def _shape_geometry(rng: np.random.Generator, w: int, h: int, im: Mapping) -> tuple[float, float, float, float]:
    """Random centre, radius of the bounding circle and rotation, fully inside the image."""
    r = _uniform(rng, (im["shape_min_frac"], im["shape_max_frac"])) * min(w, h) / 2
    cx, cy = rng.uniform(r, w - r), rng.uniform(r, h - r)
    return float(cx), float(cy), r, float(rng.uniform(0, 2 * math.pi))


def _draw_clutter(rng: np.random.Generator, draw: ImageDraw.ImageDraw, w: int, h: int, im: Mapping) -> None:
    """Thin random lines and small dots: busy but shape-free."""
    for _ in range(_randint(rng, im["clutter_lines"])):
        xy = [float(v) for v in rng.uniform(0, 1, size=4) * [w, h, w, h]]
        col = tuple(int(v) for v in rng.integers(0, 256, size=3))
        draw.line(xy, fill=col, width=_randint(rng, im["clutter_line_width"]))
    for _ in range(_randint(rng, im["clutter_dots"])):
        x, y = rng.uniform(0, w), rng.uniform(0, h)
        d = _randint(rng, im["clutter_dot_radius"])
        col = tuple(int(v) for v in rng.integers(0, 256, size=3))
        draw.ellipse([x - d, y - d, x + d, y + d], fill=col)


def _occlude(rng: np.random.Generator, img: Image.Image, cx, cy, r, im: Mapping) -> None:
    """Cover the shape's bounding box (plus a margin) with an opaque random-noise patch."""
    w, h = img.size
    m = float(im["occlude_margin_frac"]) * 2 * r
    x0, y0 = max(0, int(math.floor(cx - r - m))), max(0, int(math.floor(cy - r - m)))
    x1, y1 = min(w, int(math.ceil(cx + r + m)) + 1), min(h, int(math.ceil(cy + r + m)) + 1)
    patch = rng.integers(0, 256, size=(y1 - y0, x1 - x0, 3), dtype=np.uint8)
    img.paste(Image.fromarray(patch, "RGB"), (x0, y0))


def _image_size(rng: np.random.Generator, im: Mapping) -> tuple[int, int]:
    """Width and height in [min_size, max_size]; square for square_fraction of images."""
    bounds = (int(im["min_size"]), int(im["max_size"]))
    w = _randint(rng, bounds)
    h = w if rng.random() < float(im["square_fraction"]) else _randint(rng, bounds)
    return w, h


def render_image(cfg: Mapping, plan: dict) -> Image.Image:
    """Render the planned image (RGB or L): a shape, an occluded shape, or clutter only."""
    im, p = cfg["image"], plan["image"]
    rng = _rng(cfg["seed"], _PURPOSE_RECORD, plan["index"], _STREAM_IMAGE)
    w, h = _image_size(rng, im)
    pixels, base = _background(rng, w, h, im)
    img = Image.fromarray(pixels, "RGB")
    draw = ImageDraw.Draw(img)
    if p["mode"] in ("shape", "occluded"):
        cx, cy, r, angle = _shape_geometry(rng, w, h, im)
        colour = _contrasting_colour(rng, base, im)
        _SHAPE_DRAWERS[im["shapes"][p["group"]]](draw, cx, cy, r, angle, colour, im)
        if p["mode"] == "occluded":
            _occlude(rng, img, cx, cy, r, im)
    else:
        _draw_clutter(rng, draw, w, h, im)
    return img.convert("L") if p["grayscale"] else img


def encode_image(img: Image.Image, fmt: str, im: Mapping) -> bytes:
    """PNG or JPEG bytes with fixed encoder settings (byte-reproducible)."""
    buf = io.BytesIO()
    if fmt == "jpeg":
        img.save(buf, format="JPEG", quality=int(im["jpeg_quality"]), optimize=False, progressive=False)
    else:
        img.save(buf, format="PNG", compress_level=int(im["png_compress_level"]), optimize=False)
    return buf.getvalue()
