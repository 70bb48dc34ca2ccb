"""The real signals the datasets are made of, all shipped inside installed packages (nothing is downloaded):

- scikit-learn's handwritten digits (`load_digits`: 1,797 scans of digits 0-9 by 43 writers, 8×8, 17 grey levels);
- CPython's own documentation (`pydoc_data.topics`, shipped with every Python): sentences of English prose;
- scikit-learn's sample photographs (`load_sample_images`: a Chinese temple and a flower, 640×427 JPEG);
- matplotlib's sample data: a portrait photograph of Grace Hopper (512×600 JPEG) and an MRI scan of a head
  (256×256, 16 bit).
"""

from __future__ import annotations

import gzip
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

SKLEARN_HINT = (
    "scikit-learn is needed for the benchmark's real images and baselines; it is in the project's dev "
    "dependency group: `uv sync --group dev` (or `make setup`)"
)
DIGIT_LEVELS = 16.0  # load_digits pixel values run from 0 to 16
MRI_SIDE = 256
MRI_DTYPE = "<u2"  # little-endian 16-bit
MRI_WHITE_PERCENTILE = 99.5  # this percentile of the scan maps to white
PROSE_WORDS = (6, 30)  # words in a kept sentence
PROSE_SENTENCE = re.compile(r"[A-Z][a-z]*(?:(?:[,;:]? |['-])[A-Za-z]+)*\.")  # words, one space or mark between
SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True)
class Digits:
    """Handwritten digit scans as ink coverage in [0, 1] (N×8×8) and their digits."""

    ink: np.ndarray
    labels: np.ndarray


def _sklearn_datasets():
    try:
        from sklearn import datasets
    except ImportError:
        raise SystemExit(f"error: {SKLEARN_HINT}") from None
    return datasets


def digits() -> Digits:
    """scikit-learn's 1,797 handwritten digits."""
    bunch = _sklearn_datasets().load_digits()
    return Digits(ink=(bunch.images / DIGIT_LEVELS).astype(np.float32), labels=bunch.target.astype(int))


def photographs() -> dict[str, np.ndarray]:
    """Real photographs as RGB uint8 arrays: temple, flower (scikit-learn), portrait, scan (matplotlib)."""
    bunch = _sklearn_datasets().load_sample_images()
    by_name = {Path(f).stem: image for f, image in zip(bunch.filenames, bunch.images, strict=True)}
    return {
        "temple": by_name["china"],
        "flower": by_name["flower"],
        "portrait": _matplotlib_photo("grace_hopper.jpg"),
        "scan": _mri_scan(),
    }


def _matplotlib_photo(name: str) -> np.ndarray:
    from matplotlib import cbook

    with cbook.get_sample_data(name) as handle:
        return np.asarray(Image.open(handle).convert("RGB"))


def _mri_scan() -> np.ndarray:
    """matplotlib's MRI head scan (s1045.ima.gz), contrast-stretched to RGB uint8."""
    from matplotlib import cbook

    path = cbook.get_sample_data("s1045.ima.gz", asfileobj=False)
    with gzip.open(path) as handle:
        scan = np.frombuffer(handle.read(), MRI_DTYPE).reshape(MRI_SIDE, MRI_SIDE).astype(np.float32)
    grey = np.clip(scan / np.percentile(scan, MRI_WHITE_PERCENTILE), 0.0, 1.0) * 255
    return np.repeat(grey.astype(np.uint8)[..., None], 3, axis=2)


def prose(excluded: set[str]) -> list[str]:
    """Plain sentences of CPython's documentation (``pydoc_data.topics``), in the order of that file, each once:
    PROSE_WORDS words, a capital first, words and punctuation only (no code, numbers or brackets), none with a word of
    ``excluded`` (compared lower-cased)."""
    from pydoc_data.topics import topics

    text = re.sub(r"\s+", " ", " ".join(topics.values()))
    kept = []
    for sentence in SENTENCE_END.split(text):
        words = sentence.rstrip(".").split()
        if not PROSE_SENTENCE.fullmatch(sentence) or not PROSE_WORDS[0] <= len(words) <= PROSE_WORDS[1]:
            continue
        if not set(re.findall(r"\w+", sentence.lower())) & excluded:  # "non-zero" holds "zero"
            kept.append(sentence)
    return list(dict.fromkeys(kept))
