"""Baseline 1: one logistic regression per modality, late fusion by averaging their class probabilities.

Features: image pixels (grayscale, 28×28 average-pooled to 14×14, standardised), log-mel statistics of the
audio (baselines/features.py, standardised), character n-gram TF-IDF of the text. Each model is fitted on the
training records that have its modality; its inverse regularisation C is picked from a small grid on the
validation records. Deterministic (lbfgs), so the seed changes nothing.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from benchmarks.accuracy.baselines.features import audio_statistics, standardiser, text_vectorizer
from benchmarks.accuracy.baselines.rawdata import RawDataset
from benchmarks.accuracy.baselines.scoring import (
    BaselineResult,
    accuracy,
    fusion_scores,
    late_fusion,
    macro_f1,
    majority_class,
)
from benchmarks.accuracy.timing import timed

NAME = "logreg"
C_GRID = (0.1, 1.0, 10.0)
MAX_ITERATIONS = 1000
IMAGE_POOL = 2  # 28×28 -> 14×14 pixels: 196 features fit in seconds, 784 take minutes with lbfgs


def features(data: RawDataset, modality: str, fit_rows: np.ndarray):
    """The modality's feature matrix for every record, its transform fitted on `fit_rows`."""
    if modality == "text":
        vectorizer = text_vectorizer().fit([data.texts[i] for i in fit_rows])
        return vectorizer.transform(data.texts)
    flat = pooled_pixels(data.images) if modality == "image" else audio_statistics(data.audio)
    mean, std = standardiser(flat, fit_rows)
    return (flat - mean) / std


def pooled_pixels(images: np.ndarray, pool: int = IMAGE_POOL) -> np.ndarray:
    """[N, 1, S, S] images averaged over pool×pool blocks and flattened to [N, (S / pool)²]."""
    n, _, side, _ = images.shape
    return images.reshape(n, side // pool, pool, side // pool, pool).mean(axis=(2, 4)).reshape(n, -1)


def probabilities(model: LogisticRegression, x, classes: int) -> np.ndarray:
    """predict_proba with a column for every class (a class absent from the fitted rows gets 0)."""
    out = np.zeros((x.shape[0], classes), np.float32)
    out[:, model.classes_] = model.predict_proba(x)
    return out


def fit_modality(data: RawDataset, modality: str, seed: int) -> tuple[np.ndarray, float, float]:
    """Fit the modality's model (C by validation accuracy): its probabilities on every record, C and val acc."""
    train = data.split("train")[data.present[modality][data.split("train")]]
    val = data.split("val")[data.present[modality][data.split("val")]]
    x = features(data, modality, train)
    best = (-1.0, None, None)
    for c in C_GRID:
        model = LogisticRegression(C=c, max_iter=MAX_ITERATIONS, random_state=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(x[train], data.labels[train])
        score = accuracy(model.predict(x[val]), data.labels[val]) if len(val) else 0.0
        if score > best[0]:
            best = (score, c, model)
    score, c, model = best
    return probabilities(model, x, len(data.classes)), c, score


def run(data: RawDataset, seed: int) -> BaselineResult:
    """Fit the three models, fuse, score on the test split."""
    probs, chosen, seconds = {}, {}, {}
    with timed() as total:
        with timed() as fitting:
            for modality in data.modalities:
                with timed() as one:
                    probs[modality], chosen[modality], _ = fit_modality(data, modality, seed)
                seconds[modality] = one.cpu
        fallback = majority_class(data)
        test, val = data.split("test"), data.split("val")
        present_test = {m: data.present[m][test] for m in data.modalities}
        probs_test = {m: p[test] for m, p in probs.items()}
        test_acc, alone, without = fusion_scores(probs_test, present_test, data.labels[test], fallback)
        test_f1 = macro_f1(late_fusion(probs_test, present_test, fallback), data.labels[test])
        val_acc = accuracy(
            late_fusion({m: p[val] for m, p in probs.items()}, {m: data.present[m][val] for m in probs}, fallback),
            data.labels[val],
        )
    return BaselineResult(
        test_acc=test_acc,
        val_acc=val_acc,
        test_f1_macro=test_f1,
        alone=alone,
        without=without,
        cpu_seconds=total.cpu,
        wall_seconds=total.wall,
        fit_seconds=fitting.wall,
        fit_cpu_seconds=fitting.cpu,
        unimodal_cpu_seconds=seconds,
        details={"C": chosen},
    )
