"""Checks of the sample config's structure and ranges, before anything is planned or written."""

from __future__ import annotations

from typing import Any, Mapping

from fusion.data.sample.config import MODALITIES, _as_dict
from fusion.data.sample.image import _SHAPE_DRAWERS
from fusion.data.sample.targets import _target


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
    n_groups = {
        "image": len(c["image"]["shapes"]),
        "audio": len(c["audio"]["bands"]),
        "text": len(c["text"]["synonyms"]),
    }
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
