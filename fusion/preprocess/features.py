"""Precomputed features as a modality's input: `.npy` / `.npz` arrays, `[T, F]` sequences or `[F]` vectors.

Datasets such as CMU-MOSI/MOSEI ship features rather than raw files (COVAREP audio, FACET faces, GloVe words), and
many industrial datasets come as embeddings (CLIP, wav2vec). A record may name such an array for any modality in
that modality's usual key (`text_path`, `image`, `audio`); a modality is then all features or all raw files, as
most of its records say. Each array is validated (a numeric dtype, one or two dimensions, the training split's
feature size, finite values: anything else is quarantined with its reason), cropped to the longest training
sequence (at most `preprocess.features.max_steps`), standardised per feature with the training split's exact
statistics and stored as float32 `[T, F]`; `fusion.models.feature_encoder` projects it to the model's tokens.
"""

from __future__ import annotations

import json
import math
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from fusion.data.manifest import FILE_KEYS, Record, RecordError, resolve_file
from fusion.meta import FEATURES
from fusion.preprocess.lengths import length_summary, warn_of_cut
from fusion.preprocess.stats import MIN_STD, significant

KIND = FEATURES  # meta.json `kind` of a modality that holds feature arrays
SUFFIXES = (".npy", ".npz")
NPZ_KEY = "features"  # the array of an .npz holding several


def is_feature_file(path: str | None) -> bool:
    return isinstance(path, str) and path.lower().endswith(SUFFIXES)


def holds_features(records: list[Record], modality: str) -> bool:
    """Whether most records that have the modality give it as feature arrays (ties: raw files)."""
    kinds = Counter(is_feature_file(getattr(r, FILE_KEYS[modality])) for r in records if r.has(modality))
    return kinds[True] > kinds[False]


def load_array(path: Path) -> np.ndarray:
    """The array of a .npy file, or of an .npz holding one array (or one named 'features'); no pickles."""
    try:
        if path.suffix.lower() == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                names = list(archive.files)
                if len(names) != 1 and NPZ_KEY not in names:
                    raise RecordError(
                        f"the .npz holds {len(names)} arrays ({', '.join(names[:5])}); keep one, or "
                        f"name the features '{NPZ_KEY}'"
                    )
                return archive[NPZ_KEY if NPZ_KEY in names else names[0]]
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        reason = "holds Python objects (pickled), not numbers" if "pickle" in str(exc) else str(exc)
        raise RecordError(f"cannot read the feature array: {reason}") from None


def _shape(path: Path) -> tuple[int, ...]:
    """An array's shape, reading only the .npy header where it can."""
    if path.suffix.lower() == ".npy":
        try:
            return np.load(path, mmap_mode="r", allow_pickle=False).shape
        except (ValueError, OSError):
            return ()
    try:
        return load_array(path).shape
    except RecordError:
        return ()


class FeatureProcessor:
    """Validates, crops and standardises one modality's feature arrays into float32 [T, F] items."""

    def __init__(self, modality: str, cfg: Mapping[str, Any], root: Path, folder: str):
        self.modality, self.cfg, self.root, self.folder = modality, cfg, Path(root), folder
        self.dim: int | None = None
        self.max_steps = int(cfg["max_steps"]) if cfg else 1
        self.lengths: dict[str, float | int] | None = None  # set by fit: the training sequences' steps
        self.mean: np.ndarray | None = None
        self.std: np.ndarray | None = None

    def path(self, record: Record) -> Path:
        relative = getattr(record, FILE_KEYS[self.modality])
        if not is_feature_file(relative):
            given = "inline text" if relative is None else f"'{relative}'"
            raise RecordError(
                f"the {self.modality} of this dataset is given as feature arrays ({'/'.join(SUFFIXES)}) "
                f"but this record gives {given}; give a feature array (or raw files for every record)"
            )
        return resolve_file(self.root, relative, self.folder)

    def read(self, record: Record) -> np.ndarray:
        """The record's array as float64 [T, F] (a vector is one step), cropped to max_steps; RecordError if it is
        not numeric, has another rank or feature size, or holds NaN or Inf."""
        array = load_array(self.path(record))
        if array.dtype.kind not in "biuf":
            raise RecordError(f"feature array has dtype {array.dtype}; numbers are required (bool, int or float)")
        if array.ndim not in (1, 2) or array.size == 0:
            raise RecordError(f"feature array has shape {list(array.shape)}; expected [T, F] or [F], not empty")
        array = np.asarray(array, dtype=np.float64).reshape(-1, array.shape[-1])
        if self.dim is not None and array.shape[1] != self.dim:
            raise RecordError(
                f"feature array has {array.shape[1]} features per step; the training records have {self.dim}"
            )
        if not np.isfinite(array).all():
            raise RecordError("feature array contains NaN or Inf")
        return array[: self.max_steps]

    def fit(self, records: list[Record]) -> None:
        """Feature size (the most common among training records), longest sequence (at most max_steps, with
        meta.json's ``lengths`` and a warning when some are cut) and per-feature mean/std of a seeded subset of the
        training records."""
        shapes = []
        for record in records:
            try:
                shape = _shape(self.path(record))
            except RecordError:
                continue
            if len(shape) in (1, 2) and shape[-1] > 0:
                shapes.append((shape[0] if len(shape) == 2 else 1, shape[-1]))
        if not shapes:
            return  # every record is rejected with its reason when processed
        self.dim = Counter(f for _, f in shapes).most_common(1)[0][0]
        steps, limit = [t for t, f in shapes if f == self.dim], int(self.cfg["max_steps"])
        self.max_steps = min(limit, max(steps))
        self.lengths = length_summary(steps, limit, "max_steps")
        warn_of_cut(
            f"preprocess_{self.modality}", self.lengths, limit, "preprocess.features.max_steps", "sequences", "steps"
        )
        if self.cfg.get("standardize", True):
            self._fit_stats(records)

    def _fit_stats(self, records: list[Record]) -> None:
        rng = np.random.default_rng(int(self.cfg["norm_seed"]))
        chosen = rng.choice(len(records), size=min(len(records), int(self.cfg["norm_records"])), replace=False)
        arrays = []
        for index in sorted(chosen):
            try:
                arrays.append(self.read(records[index]))
            except RecordError:
                continue
        if arrays:
            stacked, digits = np.concatenate(arrays), int(self.cfg["stats_digits"])
            mean = np.array([significant(np.float64(v), digits) for v in _exact_column_means(stacked)])
            spread = _exact_column_means((stacked - mean) ** 2, ddof=1)
            self.mean = mean
            self.std = np.array([max(significant(float(np.sqrt(v)), digits), MIN_STD) for v in spread])

    def process(self, record: Record) -> dict[str, torch.Tensor]:
        array = self.read(record)
        if self.mean is not None:
            array = (array - self.mean) / self.std
        return {KIND: torch.from_numpy(array.astype(np.float32))}

    def meta(self) -> dict[str, Any]:
        return {
            "kind": KIND,
            "feature_dim": self.dim,
            "max_steps": self.max_steps,
            "feature_mean": None if self.mean is None else self.mean.tolist(),
            "feature_std": None if self.std is None else self.std.tolist(),
            **({"lengths": self.lengths} if self.lengths is not None else {}),
        }

    def save(self, out_dir: Path) -> None:
        """No state beyond meta.json."""

    def load(self, out_dir: Path) -> None:
        """Restore the fitted size, length and statistics from ``out_dir``/meta.json."""
        meta = json.loads((Path(out_dir) / "meta.json").read_text(encoding="utf-8"))
        self.dim, self.max_steps = int(meta["feature_dim"]), int(meta["max_steps"])
        self.mean = None if meta.get("feature_mean") is None else np.array(meta["feature_mean"])
        self.std = None if meta.get("feature_std") is None else np.array(meta["feature_std"])


def _exact_column_means(values: np.ndarray, ddof: int = 0) -> np.ndarray:
    """Per-column sum / (n - ddof) with math.fsum, so the statistics do not depend on the machine."""
    return np.array([math.fsum(column) / max(values.shape[0] - ddof, 1) for column in values.T])
