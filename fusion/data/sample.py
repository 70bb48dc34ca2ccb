"""Deterministic synthetic text/image/audio dataset where fusion is needed to classify.

Design (all tables live in ``conf/sample/default.yaml``): ten classes; each modality
reveals only which of five *groups* (a pair of classes) a record belongs to, and the
three pairings differ, so one clean modality narrows the class to two candidates while
any two clean modalities identify it exactly:

* image: shape group ``c % 5``  -> pairs {0,5} {1,6} {2,7} {3,8} {4,9}
* audio: frequency band ``c // 2`` -> pairs {0,1} {2,3} {4,5} {6,7} {8,9}
* text:  keyword group table    -> pairs {0,3} {1,4} {2,5} {6,9} {7,8}

Each modality is independently missing (key null, p=m) or corrupt (present but
uninformative, p=k), else clean (p=q=1-m-k). Bayes-optimal accuracy, defaults m=0.10,
k=0.25 -> q=0.65 (exact values, including the all-missing re-draw, come from
:func:`bayes_optimal_accuracy`):

* one modality: clean -> 1/2 (two candidates), otherwise chance 1/10. Audio corruption
  is half pure noise, half a tone from a uniformly random band (undetectable, but it
  points to the right pair only 1/5 of the time, so it is still worth 1/10).
  acc = q/2 + (1-q)/10 = 0.325 + 0.035 = 0.360.
* two modalities (e.g. image+text, both corruptions detectable):
  both clean 1, exactly one clean 1/2, none 1/10:
  acc = q^2 + 2q(1-q)/2 + (1-q)^2/10 = 0.4225 + 0.2275 + 0.01225 = 0.662.
* three modalities: image+text both clean (q^2=0.4225) -> 1. Exactly one of them clean
  (2q(1-q)=0.455): a clean tone (0.65) breaks the tie -> 1; a random tone (0.125) ->
  1/5 right + 3/5 tie/2 = 1/2; no tone (0.225) -> 1/2; so 0.65 + 0.35/2 = 0.825.
  Neither clean (0.1225): audio alone -> 0.36.
  acc = 0.4225 + 0.455*0.825 + 0.1225*0.36 = 0.842.

So a perfect single-modality model gets ~36% and a perfect tri-modal model ~84%.

Other tasks (``sample.task``, which follows ``task.name`` in the composed config) keep the
modalities, states and rendering and change only what the groups mean:

* multilabel: the label is a set of 1..``multilabel.max_labels`` genres; genre g is group g of
  every modality. Each clean modality shows one genre of the set and every genre is shown by at
  least one modality, so all three clean modalities give the exact set; a missing or corrupt
  one may hide a genre (no Bayes-optimal figure is computed for it).
* regression: the label is ``sum(group_values[group of m])`` over the three modalities, each
  drawing its own group, plus Gaussian noise, clipped to ``regression.range`` ([-3, 3] as in
  CMU-MOSI). A clean modality reveals its third of the score (no Bayes figure either).
The multiclass output is byte-identical to what it was before tasks existed: the other tasks draw
from their own generator stream.
"""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import tempfile
from collections import Counter
from itertools import combinations, product
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import soundfile as sf
from PIL import Image, ImageDraw
from tqdm import tqdm

from fusion.tasks import TASK_NAMES, by_task

MODALITIES = ("image", "audio", "text")
SUBDIRS = {"image": "image", "audio": "audio", "text": "text"}
CLASS_NAMES = ("alpha", "bravo", "charlie", "delta", "echo",
               "foxtrot", "golf", "hotel", "india", "juliet")

# SeedSequence spawn keys are fixed-length triples (purpose, index, stream): numpy pads
# short keys with zeros when mixing, so keys of different lengths could collide.
_PURPOSE_RECORD, _PURPOSE_LABELS, _PURPOSE_SPLITS = 0, 1, 2
_STREAM_PLAN, _STREAM_IMAGE, _STREAM_AUDIO, _STREAM_TEXT, _STREAM_LABEL = 0, 1, 2, 3, 4


# --------------------------------------------------------------------------- config

def _as_dict(cfg: Any) -> dict:
    """Return the config as a plain, resolved dict (accepts DictConfig or Mapping)."""
    try:
        from omegaconf import DictConfig, OmegaConf
        if isinstance(cfg, DictConfig):
            return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    except ImportError:  # pragma: no cover - omegaconf is a dependency
        pass
    if not isinstance(cfg, Mapping):
        raise TypeError(f"sample config must be a mapping, got {type(cfg).__name__}")
    return json.loads(json.dumps(cfg))  # deep copy to plain types


def _check_fractions(name: str, section: Mapping) -> None:
    """Fail when missing/corrupt fractions are not probabilities summing to <= 1."""
    m, k = float(section["missing_fraction"]), float(section["corrupt_fraction"])
    if m < 0 or k < 0 or m + k > 1:
        raise ValueError(f"{name}: need 0 <= missing_fraction + corrupt_fraction <= 1, got {m} + {k}")


def validate_config(cfg: Any) -> dict:
    """Check structure and ranges of the sample config and return it as a plain dict."""
    c = _as_dict(cfg)
    n_classes = len(c["class_names"])
    if n_classes < 2 or len(set(c["class_names"])) != n_classes:
        raise ValueError("class_names must hold at least two unique names")
    if int(c["num_records"]) < 1:
        raise ValueError("num_records must be >= 1")
    if int(c["seed"]) < 0:
        raise ValueError("seed must be >= 0")
    n_groups = {"image": len(c["image"]["shapes"]), "audio": len(c["audio"]["bands"]),
                "text": len(c["text"]["synonyms"])}
    for mod in MODALITIES:
        groups = c[mod]["groups"]
        if len(groups) != n_classes:
            raise ValueError(f"{mod}.groups needs one entry per class ({n_classes}), got {len(groups)}")
        if any(not 0 <= g < n_groups[mod] for g in groups):
            raise ValueError(f"{mod}.groups entries must lie in [0, {n_groups[mod]})")
        _check_fractions(mod, c[mod])
    _target(c).validate(c, n_groups)
    unknown = set(c["image"]["shapes"]) - set(_SHAPE_DRAWERS)
    if unknown:
        raise ValueError(f"image.shapes: unknown shapes {sorted(unknown)}; known {sorted(_SHAPE_DRAWERS)}")
    im = c["image"]
    if not 1 <= im["min_size"] <= im["max_size"]:
        raise ValueError("image: need 1 <= min_size <= max_size")
    au = c["audio"]
    if not 0 < au["min_seconds"] <= au["max_seconds"]:
        raise ValueError("audio: need 0 < min_seconds <= max_seconds")
    for lo, hi in au["bands"]:
        if not 0 < lo <= hi < min(au["sample_rates"]) / 2:
            raise ValueError(f"audio band [{lo}, {hi}] must lie below the lowest Nyquist frequency")
    if any(len(s) == 0 for s in c["text"]["synonyms"]):
        raise ValueError("text.synonyms: every group needs at least one synonym")
    if c["write_splits"]:
        total = sum(float(v) for v in c["splits"].values())
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"splits fractions must sum to 1, got {total}")
    return c


def class_names(cfg: Any) -> list[str]:
    """Class names from the config (index = class id)."""
    return list(_as_dict(cfg)["class_names"])


# --------------------------------------------------------------------------- rng

def _rng(seed: int, purpose: int, index: int = 0, stream: int = 0) -> np.random.Generator:
    """Independent generator for (seed, purpose, index, stream): order-free and parallel-safe."""
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(purpose, index, stream)))


def _uniform(rng: np.random.Generator, bounds) -> float:
    """Uniform float in the closed config range [lo, hi]."""
    lo, hi = bounds
    return float(rng.uniform(lo, hi))


def _randint(rng: np.random.Generator, bounds) -> int:
    """Uniform integer in the closed config range [lo, hi]."""
    lo, hi = bounds
    return int(rng.integers(lo, hi + 1))


# --------------------------------------------------------------------------- planning

def record_id(cfg: Mapping, index: int) -> str:
    """Id of record ``index`` (0-based), e.g. ``s00001``."""
    digits = max(int(cfg["id_digits"]), len(str(int(cfg["num_records"]))))
    return f"{cfg['id_prefix']}{index + 1:0{digits}d}"


def _balanced_labels(cfg: Mapping) -> np.ndarray:
    """Round-robin class labels, shuffled with the seed: class counts differ by at most one."""
    n, k = int(cfg["num_records"]), len(cfg["class_names"])
    labels = np.arange(n) % k
    return _rng(cfg["seed"], _PURPOSE_LABELS).permutation(labels)


def _draw_state(rng: np.random.Generator, section: Mapping) -> str:
    """Draw 'missing', 'corrupt' or 'clean' for one modality."""
    u = rng.random()
    m, k = float(section["missing_fraction"]), float(section["corrupt_fraction"])
    return "missing" if u < m else "corrupt" if u < m + k else "clean"


def _draw_present_state(rng: np.random.Generator, section: Mapping) -> str:
    """Re-draw a state conditioned on being present (used when all modalities were null)."""
    m, k = float(section["missing_fraction"]), float(section["corrupt_fraction"])
    clean = 1.0 - m - k
    if clean + k <= 0:
        return "clean"
    return "corrupt" if rng.random() < k / (clean + k) else "clean"


def _draw_states(rng: np.random.Generator, cfg: Mapping) -> dict[str, str]:
    """States of the three modalities; if all are missing one of them is re-drawn present."""
    states = {mod: _draw_state(rng, cfg[mod]) for mod in MODALITIES}
    if all(s == "missing" for s in states.values()):
        mod = MODALITIES[int(rng.integers(len(MODALITIES)))]
        states[mod] = _draw_present_state(rng, cfg[mod])
    return states


def _plan_image(rng: np.random.Generator, cfg: Mapping, state: str, shown: int) -> dict:
    """Latent factors of the image: shape group (``shown`` when clean, None when hidden), corruption mode, format."""
    im = cfg["image"]
    if state == "missing":
        return {"state": state}
    n_shapes = len(im["shapes"])
    if state == "clean":
        mode, group = "shape", shown
    elif rng.random() < float(im["occlude_fraction"]):
        mode, group = "occluded", int(rng.integers(n_shapes))
    else:
        mode, group = "clutter", None
    return {"state": state, "mode": mode, "group": group,
            "format": "jpeg" if rng.random() < float(im["jpeg_fraction"]) else "png",
            "grayscale": bool(rng.random() < float(im["grayscale_fraction"]))}


def _plan_audio(rng: np.random.Generator, cfg: Mapping, state: str, shown: int) -> dict:
    """Latent factors of the audio: frequency band (``shown`` when clean, None for pure noise), sample rate."""
    au = cfg["audio"]
    if state == "missing":
        return {"state": state}
    if state == "clean":
        mode, group = "tone", shown
    elif rng.random() < float(au["corrupt_tone_fraction"]):
        mode, group = "random_tone", int(rng.integers(len(au["bands"])))
    else:
        mode, group = "noise", None
    rates = list(au["sample_rates"])
    return {"state": state, "mode": mode, "group": group,
            "sample_rate": int(rates[int(rng.integers(len(rates)))])}


def _plan_text(rng: np.random.Generator, cfg: Mapping, state: str, shown: int) -> dict:
    """Latent factors of the text: keyword groups used (``[shown]`` when clean, else empty or two), storage."""
    tx = cfg["text"]
    if state == "missing":
        return {"state": state}
    n_groups = len(tx["synonyms"])
    if state == "clean":
        mode, groups = "keyword", [shown]
    elif n_groups >= 2 and rng.random() < float(tx["two_keyword_fraction"]):
        mode, groups = "two_keywords", [int(g) for g in rng.choice(n_groups, size=2, replace=False)]
    else:
        mode, groups = "no_keyword", []
    return {"state": state, "mode": mode, "groups": groups,
            "storage": "file" if rng.random() < float(tx["path_fraction"]) else "inline"}


def plan_record(cfg: Mapping, index: int, label: int) -> dict:
    """All discrete latent factors of one record, from its own (seed, index) generator.

    ``label`` is the balanced class index (used by the multiclass task); the task decides which
    group each clean modality shows and what the record's label is.
    """
    rng = _rng(cfg["seed"], _PURPOSE_RECORD, index, _STREAM_PLAN)
    states = _draw_states(rng, cfg)
    shown, fields = _target(cfg).draw(cfg, index, int(label))
    return {"index": index, "id": record_id(cfg, index), **fields,
            "image": _plan_image(rng, cfg, states["image"], shown["image"]),
            "audio": _plan_audio(rng, cfg, states["audio"], shown["audio"]),
            "text": _plan_text(rng, cfg, states["text"], shown["text"])}


def _assign_splits(cfg: Mapping, strata: np.ndarray, n_strata: int) -> list[str]:
    """Stratified train/val/test assignment: per stratum (class), shuffle and cut by the fractions."""
    rng = _rng(cfg["seed"], _PURPOSE_SPLITS)
    names = list(cfg["splits"].keys())
    fracs = np.array([float(cfg["splits"][s]) for s in names])
    out = [""] * len(strata)
    for c in range(n_strata):
        idx = rng.permutation(np.flatnonzero(strata == c))
        cuts = np.round(np.cumsum(fracs) * len(idx)).astype(int)
        cuts[-1] = len(idx)
        for name, part in zip(names, np.split(idx, cuts[:-1]), strict=True):
            for i in part:
                out[int(i)] = name
    return out


def plan_dataset(cfg: Any) -> list[dict]:
    """Latent factors of every record (class, per-modality state/group/format, split).

    Cheap (no rendering); tests and analyses use it to check the design, and
    :func:`generate_sample` renders exactly these plans.
    """
    c = validate_config(cfg)
    labels = _balanced_labels(c)
    plans = [plan_record(c, i, int(labels[i])) for i in range(len(labels))]
    if c["write_splits"]:
        for plan, split in zip(plans, _assign_splits(c, *_target(c).strata(c, labels)), strict=True):
            plan["split"] = split
    return plans


# --------------------------------------------------------------------------- image

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
    pts = np.array([[t, r], [t, t], [r, t], [r, -t], [t, -t], [t, -r],
                    [-t, -r], [-t, -t], [-r, -t], [-r, t], [-t, t], [-t, r]])
    draw.polygon(_rotate(pts, angle, cx, cy), fill=colour)


def _draw_ring(draw, cx, cy, r, angle, colour, im):
    """Annulus of outer radius r and width ring_width_frac * 2r."""
    width = max(1, int(round(float(im["ring_width_frac"]) * 2 * r)))
    draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=colour, width=width)


_SHAPE_DRAWERS = {"circle": _draw_circle, "square": _draw_square, "triangle": _draw_triangle,
                  "cross": _draw_cross, "ring": _draw_ring}


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


# --------------------------------------------------------------------------- audio

def _envelope(rng: np.random.Generator, n: int, sr: int, au: Mapping) -> np.ndarray:
    """Attack / exponentially decaying sustain / release amplitude envelope, peak 1."""
    t = np.arange(n, dtype=np.float64) / sr
    attack = max(1, int(_uniform(rng, au["attack_seconds"]) * sr))
    release = max(1, int(_uniform(rng, au["release_seconds"]) * sr))
    env = np.exp(-_uniform(rng, au["decay_rate"]) * t)
    env[:attack] *= np.linspace(0.0, 1.0, attack, endpoint=False)[: min(attack, n)]
    env[-release:] *= np.linspace(1.0, 0.0, release)[-min(release, n):]
    return env


def _tone(rng: np.random.Generator, band, n: int, sr: int, au: Mapping) -> np.ndarray:
    """Harmonic tone with fundamental uniform in ``band``, harmonics kept below Nyquist."""
    t = np.arange(n, dtype=np.float64) / sr
    f0 = _uniform(rng, band)
    limit = float(au["nyquist_margin"]) * sr / 2
    out = np.zeros(n)
    total = 0.0
    for k, amp in enumerate(au["harmonics"], start=1):
        phase = rng.uniform(0, 2 * math.pi)
        if k * f0 < limit:
            out += float(amp) * np.sin(2 * math.pi * k * f0 * t + phase)
            total += abs(float(amp))
    return out / max(total, 1e-9)


def render_audio(cfg: Mapping, plan: dict) -> tuple[np.ndarray, int]:
    """Render the planned clip: tone in a band plus noise, or pure noise; float in [-1, 1]."""
    au, p = cfg["audio"], plan["audio"]
    rng = _rng(cfg["seed"], _PURPOSE_RECORD, plan["index"], _STREAM_AUDIO)
    sr = int(p["sample_rate"])
    n = max(1, int(round(_uniform(rng, (au["min_seconds"], au["max_seconds"])) * sr)))
    if p["group"] is None:
        signal = rng.normal(0.0, _uniform(rng, au["corrupt_noise_level"]), size=n)
    else:
        band = au["bands"][p["group"]]
        tone = _tone(rng, band, n, sr, au) * _envelope(rng, n, sr, au)
        noise = rng.normal(0.0, _uniform(rng, au["noise_level"]), size=n)
        signal = _uniform(rng, au["peak_amplitude"]) * tone + noise
    return np.clip(signal, -1.0, 1.0).astype(np.float32), sr


def encode_audio(signal: np.ndarray, sr: int, au: Mapping) -> bytes:
    """WAV bytes (16-bit PCM by default) written with soundfile."""
    buf = io.BytesIO()
    sf.write(buf, signal, sr, subtype=str(au["subtype"]), format="WAV")
    return buf.getvalue()


# --------------------------------------------------------------------------- text

def _typo(rng: np.random.Generator, text: str, tx: Mapping) -> str:
    """Character-level typos (swap, drop, double, replace) at typo_rate on alphabet letters."""
    alphabet, rate = str(tx["typo_alphabet"]), float(tx["typo_rate"])
    chars, out, i = list(text), [], 0
    while i < len(chars):
        ch = chars[i]
        if ch.lower() in alphabet and rng.random() < rate:
            op = int(rng.integers(4))
            if op == 0 and i + 1 < len(chars):  # swap with next
                out += [chars[i + 1], ch]
                i += 2
                continue
            if op == 1:  # drop
                pass
            elif op == 2:  # double
                out += [ch, ch]
            else:  # replace
                out.append(alphabet[int(rng.integers(len(alphabet)))])
        else:
            out.append(ch)
        i += 1
    return "".join(out)


def _pick(rng: np.random.Generator, items) -> str:
    """Uniformly random element of a config list."""
    return str(items[int(rng.integers(len(items)))])


def _keyword_slot(rng: np.random.Generator, groups: list[int], tx: Mapping) -> str:
    """Keyword phrase: a synonym per group, or a neutral noun when there is no group."""
    if not groups:
        return _pick(rng, tx["neutral_nouns"])
    return " and ".join(_pick(rng, tx["synonyms"][g]) for g in groups)


def render_text(cfg: Mapping, plan: dict) -> str:
    """Render the planned sentence: template + keyword slot + fillers, then typos."""
    tx, p = cfg["text"], plan["text"]
    rng = _rng(cfg["seed"], _PURPOSE_RECORD, plan["index"], _STREAM_TEXT)
    template = _pick(rng, tx["templates"])
    a, b = (str(tx["fillers"][int(i)]) for i in rng.choice(len(tx["fillers"]), size=2, replace=False))
    sentence = template.format(kw=_keyword_slot(rng, p["groups"], tx), a=a, b=b)
    extra = [_pick(rng, tx["fillers"]) for _ in range(_randint(rng, tx["extra_fillers"]))]
    if extra:
        sentence = f"{sentence} {' '.join(extra)}"
    if rng.random() < float(tx["capitalize_fraction"]):
        sentence = sentence[:1].upper() + sentence[1:]
    return _typo(rng, sentence, tx)


# --------------------------------------------------------------------------- writing

def _write_bytes(path: Path, data: bytes) -> None:
    """Write bytes to a file."""
    with open(path, "wb") as fh:
        fh.write(data)


def write_record(cfg: Mapping, plan: dict, root: Path) -> dict:
    """Render one record's files under ``root`` and return its manifest entry."""
    rid = plan["id"]
    entry: dict[str, Any] = {"id": rid, "label": plan["label"], "image": None, "audio": None}
    if plan["image"]["state"] != "missing":
        ext = "jpg" if plan["image"]["format"] == "jpeg" else "png"
        rel = f"{SUBDIRS['image']}/{rid}.{ext}"
        _write_bytes(root / rel, encode_image(render_image(cfg, plan), plan["image"]["format"], cfg["image"]))
        entry["image"] = rel
    if plan["audio"]["state"] != "missing":
        rel = f"{SUBDIRS['audio']}/{rid}.wav"
        _write_bytes(root / rel, encode_audio(*render_audio(cfg, plan), cfg["audio"]))
        entry["audio"] = rel
    if plan["text"]["state"] == "missing":
        entry["text"] = None
    elif plan["text"]["storage"] == "file":
        rel = f"{SUBDIRS['text']}/{rid}.txt"
        _write_bytes(root / rel, render_text(cfg, plan).encode("utf-8"))
        entry["text_path"] = rel
    else:
        entry["text"] = render_text(cfg, plan)
    if "split" in plan:
        entry["split"] = plan["split"]
    return entry


def _manifest_line(entry: dict) -> str:
    """One manifest line: sorted keys, UTF-8 kept as is."""
    return json.dumps(entry, sort_keys=True, ensure_ascii=False) + "\n"


def _replace_dir(tmp: Path, output_dir: Path) -> None:
    """Move the finished ``tmp`` folder to ``output_dir``, removing any previous one."""
    old = None
    if output_dir.exists() or output_dir.is_symlink():
        old = output_dir.with_name(f".{output_dir.name}.old-{os.getpid()}")
        if old.exists():
            shutil.rmtree(old)
        os.rename(output_dir, old)
    os.rename(tmp, output_dir)
    if old is not None:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old)
        else:
            old.unlink()


# --------------------------------------------------------------------------- tasks

class _Target:
    """What a task makes of the latent groups: the label of each record and its summary."""

    name = ""

    @staticmethod
    def validate(c: Mapping, n_groups: Mapping[str, int]) -> None:
        """Task-specific config checks (the class tables are checked for every task)."""

    @staticmethod
    def draw(c: Mapping, index: int, class_index: int) -> tuple[dict[str, int], dict]:
        """(group each clean modality shows, the plan's label fields); ``class_index`` is the
        balanced class of the record (the multiclass label)."""
        raise NotImplementedError

    @staticmethod
    def strata(c: Mapping, class_indices: np.ndarray) -> tuple[np.ndarray, int]:
        """What write_splits stratifies by, and the number of strata (default: one)."""
        return np.zeros_like(class_indices), 1

    @staticmethod
    def summary(c: Mapping, plans: list[dict]) -> tuple[dict, dict]:
        """(label statistics, Bayes-optimal figures) for the summary."""
        raise NotImplementedError

    @staticmethod
    def label_lines(summary: Mapping) -> list[str]:
        raise NotImplementedError

    @classmethod
    def bayes_line(cls, summary: Mapping) -> str:
        return f"  bayes-optimal accuracy: not computed for {cls.name} labels (multiclass only)"


class _Multiclass(_Target):
    """One class per record, revealed pairwise by the modalities (the module docstring's design)."""

    name = "multiclass"

    @staticmethod
    def draw(c: Mapping, index: int, class_index: int) -> tuple[dict[str, int], dict]:
        shown = {mod: int(c[mod]["groups"][class_index]) for mod in MODALITIES}
        return shown, {"class_index": class_index, "label": c["class_names"][class_index]}

    @staticmethod
    def strata(c: Mapping, class_indices: np.ndarray) -> tuple[np.ndarray, int]:
        return class_indices, len(c["class_names"])

    @staticmethod
    def summary(c: Mapping, plans: list[dict]) -> tuple[dict, dict]:
        return ({"classes": {name: sum(p["label"] == name for p in plans) for name in c["class_names"]}},
                {"bayes_optimal_accuracy": bayes_optimal_accuracy(c)})

    @staticmethod
    def label_lines(summary: Mapping) -> list[str]:
        return [f"  classes:       {_kv(summary['classes'])}"]

    @classmethod
    def bayes_line(cls, summary: Mapping) -> str:
        return "  bayes-optimal accuracy: " + ", ".join(
            f"{k} {v:.3f}" for k, v in summary["bayes_optimal_accuracy"].items())


class _Multilabel(_Target):
    """1..max_labels genres per record; genre g is group g of every modality."""

    name = "multilabel"

    @staticmethod
    def validate(c: Mapping, n_groups: Mapping[str, int]) -> None:
        ml = c["multilabel"]
        genres = list(ml["genres"])
        if len(set(genres)) != len(genres) or not all(isinstance(g, str) and g for g in genres):
            raise ValueError("multilabel.genres must hold unique non-empty names")
        _check_one_per_group("multilabel.genres", len(genres), n_groups)
        if not 1 <= int(ml["max_labels"]) <= min(len(MODALITIES), len(genres)):
            raise ValueError(f"multilabel.max_labels must lie in [1, {min(len(MODALITIES), len(genres))}]")

    @staticmethod
    def draw(c: Mapping, index: int, class_index: int) -> tuple[dict[str, int], dict]:
        """k genres uniform in 1..max_labels; each genre shown by one modality, the others repeat one."""
        ml = c["multilabel"]
        rng = _rng(c["seed"], _PURPOSE_RECORD, index, _STREAM_LABEL)
        k = int(rng.integers(1, int(ml["max_labels"]) + 1))
        genres = sorted(int(g) for g in rng.choice(len(ml["genres"]), size=k, replace=False))
        shown = genres + [int(g) for g in rng.choice(genres, size=len(MODALITIES) - k)]
        order = rng.permutation(len(MODALITIES))
        return ({mod: shown[int(j)] for mod, j in zip(MODALITIES, order, strict=True)},
                {"genres": genres, "label": [str(ml["genres"][g]) for g in genres]})

    @staticmethod
    def summary(c: Mapping, plans: list[dict]) -> tuple[dict, dict]:
        genres = c["multilabel"]["genres"]
        return ({"classes": {name: sum(name in p["label"] for p in plans) for name in genres},
                 "label_sizes": dict(sorted(Counter(len(p["label"]) for p in plans).items()))}, {})

    @staticmethod
    def label_lines(summary: Mapping) -> list[str]:
        return [f"  genres:        {_kv(summary['classes'])} (records carrying each)",
                f"  labels/record: {_kv(summary['label_sizes'])}"]


class _Regression(_Target):
    """A score: the sum of the three modalities' group values plus noise, clipped to the range."""

    name = "regression"

    @staticmethod
    def validate(c: Mapping, n_groups: Mapping[str, int]) -> None:
        rg = c["regression"]
        _check_one_per_group("regression.group_values", len(rg["group_values"]), n_groups)
        lo, hi = rg["range"]
        if not lo < hi or float(rg["noise_std"]) < 0 or int(rg["decimals"]) < 0:
            raise ValueError("regression: need range lo < hi, noise_std >= 0 and decimals >= 0")

    @staticmethod
    def draw(c: Mapping, index: int, class_index: int) -> tuple[dict[str, int], dict]:
        rg = c["regression"]
        values = [float(v) for v in rg["group_values"]]
        rng = _rng(c["seed"], _PURPOSE_RECORD, index, _STREAM_LABEL)
        groups = {mod: int(rng.integers(len(values))) for mod in MODALITIES}
        score = sum(values[g] for g in groups.values()) + float(rng.normal(0.0, float(rg["noise_std"])))
        score = round(float(np.clip(score, *rg["range"])), int(rg["decimals"])) + 0.0  # no -0.0
        return groups, {"latent_groups": groups, "label": score}

    @staticmethod
    def summary(c: Mapping, plans: list[dict]) -> tuple[dict, dict]:
        scores = np.array([p["label"] for p in plans], dtype=float)
        stats = {"mean": scores.mean(), "std": scores.std(), "min": scores.min(), "max": scores.max()}
        return ({"score": {k: round(float(v), 3) for k, v in stats.items()},
                 "sign": {"negative": int((scores < 0).sum()), "non_negative": int((scores >= 0).sum())}}, {})

    @staticmethod
    def label_lines(summary: Mapping) -> list[str]:
        return [f"  score:         {_kv(summary['score'])}; sign {_kv(summary['sign'])}"]


def _check_one_per_group(key: str, count: int, n_groups: Mapping[str, int]) -> None:
    if any(n != count for n in n_groups.values()):
        raise ValueError(f"{key} needs one entry per group of every modality: {count} given, "
                         f"groups per modality {dict(n_groups)}")


_TARGETS = by_task((_Multiclass, _Multilabel, _Regression))


def _target(c: Mapping) -> type[_Target]:
    """The task of the sample config (``task``; multiclass when absent)."""
    name = c.get("task", "multiclass")
    if name not in _TARGETS:
        raise ValueError(f"task must be one of {', '.join(TASK_NAMES)}, got {name!r}")
    return _TARGETS[name]


# --------------------------------------------------------------------------- summary / analysis

def summarize(cfg: Any, plans: list[dict]) -> dict:
    """Counts per class (or label statistics), per modality state/mode, sample rates, image formats,
    text storage, and for multiclass the Bayes-optimal accuracies."""
    c = _as_dict(cfg)
    target = _target(c)
    labels, bayes = target.summary(c, plans)
    mods = {}
    for mod in MODALITIES:
        states = Counter(p[mod]["state"] for p in plans)
        mods[mod] = {"present": states["clean"] + states["corrupt"], "missing": states["missing"],
                     "corrupt": states["corrupt"], "clean": states["clean"],
                     "modes": dict(sorted(Counter(p[mod]["mode"] for p in plans if "mode" in p[mod]).items()))}
    present = [p for p in plans if p["image"]["state"] != "missing"]
    summary = {
        "num_records": len(plans),
        "task": target.name,
        **labels,
        "modalities": mods,
        "sample_rates": dict(sorted(Counter(p["audio"]["sample_rate"] for p in plans
                                            if p["audio"]["state"] != "missing").items())),
        "image_formats": dict(sorted(Counter(p["image"]["format"] for p in present).items())),
        "image_modes": dict(sorted(Counter("L" if p["image"]["grayscale"] else "RGB" for p in present).items())),
        "text_storage": dict(sorted(Counter(p["text"]["storage"] for p in plans
                                            if p["text"]["state"] != "missing").items())),
        **bayes,
    }
    if c["write_splits"]:
        summary["splits"] = dict(sorted(Counter(p["split"] for p in plans).items()))
    return summary


def _kv(counts: Mapping) -> str:
    """'a=1 b=2' rendering of a count dict."""
    return " ".join(f"{k}={v}" for k, v in counts.items())


def format_summary(summary: Mapping) -> str:
    """Human-readable multi-line rendering of a :func:`generate_sample` summary."""
    target = _TARGETS[summary.get("task", "multiclass")]
    lines = [f"sample: {summary['num_records']} records -> {summary.get('output_dir', '?')}",
             *target.label_lines(summary)]
    for mod, st in summary["modalities"].items():
        lines.append(f"  {mod + ':':<14} present {st['present']} (clean {st['clean']}, corrupt {st['corrupt']}),"
                     f" missing {st['missing']}; modes {_kv(st['modes'])}")
    lines += [f"  sample rates:  {_kv(summary['sample_rates'])}",
              f"  image formats: {_kv(summary['image_formats'])}; modes {_kv(summary['image_modes'])}",
              f"  text storage:  {_kv(summary['text_storage'])}"]
    if "splits" in summary:
        lines.append(f"  splits:        {_kv(summary['splits'])}")
    lines.append(target.bayes_line(summary))
    return "\n".join(lines)


def _state_probs(section: Mapping) -> dict[str, float]:
    """Prior of the modality's state."""
    m, k = float(section["missing_fraction"]), float(section["corrupt_fraction"])
    return {"missing": m, "corrupt": k, "clean": 1.0 - m - k}


def _joint_states(cfg: Mapping) -> dict[tuple[str, str, str], float]:
    """Exact joint state distribution including the all-missing re-draw."""
    priors = [_state_probs(cfg[mod]) for mod in MODALITIES]
    joint: dict[tuple[str, str, str], float] = Counter()
    for combo in product(("missing", "corrupt", "clean"), repeat=3):
        p = math.prod(priors[j][s] for j, s in enumerate(combo))
        if all(s == "missing" for s in combo):
            for j in range(3):
                present = priors[j]["clean"] + priors[j]["corrupt"]
                for s in ("clean", "corrupt"):
                    share = (priors[j][s] / present) if present > 0 else float(s == "clean")
                    new = list(combo)
                    new[j] = s
                    joint[tuple(new)] += p / 3 * share
        else:
            joint[combo] += p
    return joint


def _observations(cfg: Mapping, mod: str, state: str, c: int) -> list[tuple[Any, float]]:
    """What a perfect observer sees of one modality, with probabilities.

    Detectable corruptions (no shape, pure noise, no/two keywords) are uninformative;
    a corrupt random-band tone looks like a clean one from a random band.
    """
    sec = cfg[mod]
    if state == "missing":
        return [("missing", 1.0)]
    if state == "clean":
        return [(("group", int(sec["groups"][c])), 1.0)]
    if mod == "audio":
        q, nb = float(sec["corrupt_tone_fraction"]), len(sec["bands"])
        return [("corrupt", 1.0 - q)] + [(("group", b), q / nb) for b in range(nb)]
    return [("corrupt", 1.0)]


def bayes_optimal_accuracy(cfg: Any) -> dict[str, float]:
    """Exact accuracy of the Bayes-optimal classifier for every subset of modalities."""
    c = _as_dict(cfg)
    n_classes = len(c["class_names"])
    joint: dict[tuple, np.ndarray] = {}
    for states, p_states in _joint_states(c).items():
        for y in range(n_classes):
            per_mod = [_observations(c, mod, s, y) for mod, s in zip(MODALITIES, states, strict=True)]
            for obs in product(*per_mod):
                key = tuple(o for o, _ in obs)
                vec = joint.setdefault(key, np.zeros(n_classes))
                vec[y] += p_states / n_classes * math.prod(pr for _, pr in obs)
    out = {}
    for r in range(1, 4):
        for subset in _subsets(r):
            marg: dict[tuple, np.ndarray] = {}
            for key, vec in joint.items():
                k = tuple(key[j] for j in subset)
                marg[k] = marg.get(k, np.zeros(n_classes)) + vec
            name = "+".join(MODALITIES[j] for j in subset)
            out[name] = round(float(sum(v.max() for v in marg.values())), 4)
    return out


def _subsets(r: int) -> list[tuple[int, ...]]:
    """Index subsets of the three modalities of size r, in a fixed order."""
    return list(combinations(range(len(MODALITIES)), r))


# --------------------------------------------------------------------------- entry point

def generate_sample(cfg: Any, output_dir: Path) -> dict:
    """Generate the dataset into ``output_dir`` atomically and return a summary dict.

    Files are rendered into a hidden temporary sibling folder which then replaces
    ``output_dir``, so an interrupted run never leaves a complete-looking dataset.
    """
    c = validate_config(cfg)
    output_dir = Path(output_dir)
    plans = plan_dataset(c)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.tmp-", dir=output_dir.parent))
    try:
        os.chmod(tmp, 0o755)
        for sub in SUBDIRS.values():
            (tmp / sub).mkdir()
        lines = [_manifest_line(write_record(c, plan, tmp))
                 for plan in tqdm(plans, desc="sample", unit="rec", disable=not c["progress"])]
        with open(tmp / "manifest.jsonl", "w", encoding="utf-8", newline="\n") as fh:
            fh.writelines(lines)
        _replace_dir(tmp, output_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    summary = summarize(c, plans)
    summary["output_dir"] = str(output_dir)
    return summary
