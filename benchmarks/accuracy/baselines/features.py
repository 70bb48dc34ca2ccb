"""Features both baselines share: character n-gram TF-IDF of the texts, summary statistics of the log-mel,
and standardisation fitted on the training records that have the modality."""

from __future__ import annotations

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer

NGRAMS = (2, 4)  # character n-grams within word boundaries: robust to typos
MIN_DOCUMENT_COUNT = 2  # an n-gram must occur in this many training texts
STD_FLOOR = 1e-6


def text_vectorizer() -> TfidfVectorizer:
    """Lower-cased char n-gram TF-IDF (sublinear term frequency), fitted on the training texts."""
    return TfidfVectorizer(
        analyzer="char_wb",
        ngram_range=NGRAMS,
        min_df=MIN_DOCUMENT_COUNT,
        lowercase=True,
        sublinear_tf=True,
        dtype=np.float32,
    )


def audio_statistics(logmel: np.ndarray) -> np.ndarray:
    """Per mel band: mean, standard deviation and maximum over time of the log-mel and the mean absolute
    frame-to-frame change ([N, 1, mels, frames] -> [N, 4 × mels]); the word's position in time drops out."""
    mel = logmel[:, 0]
    delta = np.abs(np.diff(mel, axis=2))
    return np.concatenate([mel.mean(2), mel.std(2), mel.max(2), delta.mean(2)], axis=1)


def standardiser(values: np.ndarray, fit_on: np.ndarray, axis: tuple[int, ...] = (0,)) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation over `axis` of the rows `fit_on` (indices), for (x - mean) / std."""
    sample = values[fit_on]
    return sample.mean(axis=axis, keepdims=True), np.maximum(sample.std(axis=axis, keepdims=True), STD_FLOOR)
