"""Record planning: the discrete latent factors of every record (label, per-modality state, group and format,
split), drawn without rendering, so tests and analyses can check the design cheaply."""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from fusion.data.sample.config import MODALITIES
from fusion.data.sample.rng import _PURPOSE_LABELS, _PURPOSE_RECORD, _PURPOSE_SPLITS, _STREAM_PLAN, _rng
from fusion.data.sample.targets import _target
from fusion.data.sample.validate import validate_config


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
    return {
        "state": state,
        "mode": mode,
        "group": group,
        "format": "jpeg" if rng.random() < float(im["jpeg_fraction"]) else "png",
        "grayscale": bool(rng.random() < float(im["grayscale_fraction"])),
    }


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
    return {"state": state, "mode": mode, "group": group, "sample_rate": int(rates[int(rng.integers(len(rates)))])}


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
    return {
        "state": state,
        "mode": mode,
        "groups": groups,
        "storage": "file" if rng.random() < float(tx["path_fraction"]) else "inline",
    }


def plan_record(cfg: Mapping, index: int, label: int) -> dict:
    """All discrete latent factors of one record, from its own (seed, index) generator.

    ``label`` is the balanced class index (used by the multiclass task); the task decides which
    group each clean modality shows and what the record's label is.
    """
    rng = _rng(cfg["seed"], _PURPOSE_RECORD, index, _STREAM_PLAN)
    states = _draw_states(rng, cfg)
    shown, fields = _target(cfg).draw(cfg, index, int(label))
    return {
        "index": index,
        "id": record_id(cfg, index),
        **fields,
        "image": _plan_image(rng, cfg, states["image"], shown["image"]),
        "audio": _plan_audio(rng, cfg, states["audio"], shown["audio"]),
        "text": _plan_text(rng, cfg, states["text"], shown["text"]),
    }


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
