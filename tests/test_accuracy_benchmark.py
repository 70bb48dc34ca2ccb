"""The real-signal accuracy benchmark (benchmarks/accuracy): the dataset builders honour the data contract, are
deterministic and miss modalities in the designed proportions; the baselines learn an easy case; the runner's
tables compute mean ± std as by hand. Building needs espeak-ng (`apt-get install espeak-ng`)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import multiprocessing
import re
import shutil
import sys
import wave
from pathlib import Path

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient
from PIL import Image

from benchmarks.accuracy.__main__ import main, parse_args
from benchmarks.accuracy.baselines import lenet, logreg, rawdata
from benchmarks.accuracy.baselines.scoring import late_fusion, macro_f1, majority_class
from benchmarks.accuracy.datasets import sound
from benchmarks.accuracy.datasets.avdigits import WORDS as DIGIT_WORDS
from benchmarks.accuracy.datasets.avdigits import AVDigits
from benchmarks.accuracy.datasets.avnoisy import NOISY
from benchmarks.accuracy.datasets.avnotes import NOTE_SENTENCES, number_words
from benchmarks.accuracy.datasets.avsentences import SPOKEN_WORDS
from benchmarks.accuracy.datasets.bayes import bayes_accuracy, expectations
from benchmarks.accuracy.datasets.build import DATASET_INFO, LATENT, MANIFEST, build, fingerprint
from benchmarks.accuracy.datasets.plan import (
    MISSING_FRACTION,
    MODALITIES,
    NOISY_SPLITS,
    balanced_labels,
    class_shares,
    long_tail_labels,
    plan_records,
    presence_probability,
)
from benchmarks.accuracy.datasets.registry import DATASETS, builder
from benchmarks.accuracy.runner import groups, paired, project, summary, variants
from benchmarks.accuracy.runner import run as run_module
from benchmarks.accuracy.runner.run import Settings, run
from benchmarks.accuracy.runner.systems import TUNED, checked_overrides, preprocess_only, select, tuned_overrides
from benchmarks.tables import format_text
from fusion.config import compose
from fusion.data.manifest import load_manifest
from fusion.preprocess.common import _processors

TINY = 40  # records per built dataset
PLANNED = 5000  # plans drawn to check proportions (no file is written)
PROPORTION_TOLERANCE = 0.015
EASY_RECORDS = 80
EASY_EPOCHS = 6


@pytest.fixture(scope="module")
def espeak():
    if shutil.which("espeak-ng") is None:
        pytest.fail(
            "espeak-ng is not installed; the benchmark datasets speak their audio with it. Install it with "
            "`apt-get install espeak-ng` (CI: .ci/run installs it)."
        )


@pytest.fixture(scope="module")
def built(espeak, tmp_path_factory) -> dict[str, Path]:
    """Both datasets, TINY records each, seed 0."""
    base = tmp_path_factory.mktemp("accuracy-data")
    return {name: _build(name, base / name) for name in DATASETS}


def _build(name: str, out: Path, seed: int = 0) -> Path:
    build(builder(name), out, TINY, seed, progress=False)
    return out


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_built_manifest_passes_the_projects_validation(built, name):
    root = built[name]
    cfg = compose([f"data.root={root}"])
    manifest = load_manifest(root, MANIFEST, cfg.data.split, stage="test")
    assert manifest.rejections == []
    assert len(manifest.records) == TINY
    assert set(manifest.classes) <= set(builder(name).classes)
    info = json.loads((root / DATASET_INFO).read_text(encoding="utf-8"))
    assert info["records"] == TINY and set(info["bayes_optimal_accuracy"]) >= {"text", "text+image+audio"}
    # the project's own processors decode every file (a record they reject would raise RecordError here)
    for modality in MODALITIES:
        processor = _processors()[modality](cfg.preprocess[modality], root, cfg.data.dirs[modality])
        present = [r for r in manifest.records if r.has(modality)]
        processor.fit([r for r in present if r.split == "train"])
        for record in present:
            processor.process(record)


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_files_vary_in_format_rate_and_storage(built, name):
    lines = [json.loads(line) for line in (built[name] / MANIFEST).read_text(encoding="utf-8").splitlines()]
    images = [Image.open(built[name] / r["image"]) for r in lines if r.get("image")]
    assert {i.format for i in images} == {"PNG", "JPEG"} and {i.mode for i in images} == {"L", "RGB"}
    assert len({i.size for i in images}) > 5
    audio = [r["audio"] for r in lines if r.get("audio")]
    assert {Path(a).suffix for a in audio} == {".wav", ".flac"}
    info = json.loads((built[name] / DATASET_INFO).read_text(encoding="utf-8"))
    assert len(info["audio"]["sample_rate"]) >= 4
    assert any("text_path" in r for r in lines) and any(isinstance(r.get("text"), str) for r in lines)
    keys = ("image", "audio")  # a missing modality is sometimes a null value, sometimes no key at all
    assert any(k in r and r[k] is None for r in lines for k in keys) and any(k not in r for r in lines for k in keys)


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_each_modality_is_missing_in_about_eight_percent_never_all(name):
    plans = plan_records(name, 0, PLANNED, len(builder(name).classes))
    for modality in MODALITIES:
        share = sum(not p.has(modality) for p in plans) / PLANNED
        assert abs(share - (1 - presence_probability())) < PROPORTION_TOLERANCE, (modality, share)
    assert all(len(p.missing) < len(MODALITIES) for p in plans)
    assert 1 - presence_probability() == pytest.approx(MISSING_FRACTION, abs=1e-3)


def test_long_tailed_labels_follow_the_shares_and_keep_every_class():
    shares = class_shares(10, 10.0)
    assert shares.sum() == pytest.approx(1.0) and shares[0] / shares[-1] == pytest.approx(10.0)
    assert np.all(np.diff(shares) < 0) and np.allclose(class_shares(4, 1.0), 0.25)
    counts = np.bincount(long_tail_labels("d", 0, 1500, 10, 10.0), minlength=10)
    assert counts.sum() == 1500 and np.all(np.abs(counts - 1500 * shares) <= 1), counts
    assert np.all(np.bincount(long_tail_labels("d", 0, 12, 10, 100.0), minlength=10) >= 1)  # every class once
    assert np.array_equal(long_tail_labels("d", 3, 101, 10, 1.0), balanced_labels("d", 3, 101, 10))
    with pytest.raises(ValueError, match="must be >= 1"):
        class_shares(10, 0.5)


def test_long_tailed_splits_keep_the_proportions(built):
    info = json.loads((built["avlongtail"] / DATASET_INFO).read_text())
    assert info["class_ratio"] == builder("avlongtail").class_ratio
    plans = plan_records("avlongtail", 0, PLANNED, 10, class_ratio=info["class_ratio"])
    for split in ("train", "test"):
        counts = np.bincount([p.label for p in plans if p.split == split], minlength=10)
        assert np.abs(counts / counts.sum() - class_shares(10, info["class_ratio"])).max() < PROPORTION_TOLERANCE
    manifest = [json.loads(line) for line in (built["avlongtail"] / MANIFEST).read_text().splitlines()]
    for split, counts in info["class_counts"].items():
        assert counts == {c: sum(r["label"] == c and r["split"] == split for r in manifest) for c in info["classes"]}
    assert "class_counts" not in json.loads((built["avnoisy"] / DATASET_INFO).read_text())  # balanced: as before


def test_label_noise_reaches_the_annotated_splits_only_and_always_names_another_class(built):
    noise = builder("avmislabeled").label_noise
    plans = plan_records("avmislabeled", 0, PLANNED, 10, label_noise=noise)
    for split in ("train", "val", "test"):
        members = [p for p in plans if p.split == split]
        wrong = [p for p in members if p.given is not None]
        expected = noise if split in NOISY_SPLITS else 0.0
        assert abs(len(wrong) / len(members) - expected) < 2 * PROPORTION_TOLERANCE, split
        assert all(p.given != p.label and 0 <= p.given < 10 and p.manifest_label == p.given for p in wrong)
    assert len({p.given for p in plans if p.given is not None}) == 10  # every wrong class occurs
    clean = plan_records("avmislabeled", 0, PLANNED, 10)
    assert [(p.label, p.split, p.missing) for p in clean] == [(p.label, p.split, p.missing) for p in plans]
    assert all(p.given is None and p.manifest_label == p.label for p in clean)
    with pytest.raises(ValueError, match="label_noise"):
        plan_records("avmislabeled", 0, 10, 10, label_noise=1.0)

    info = json.loads((built["avmislabeled"] / DATASET_INFO).read_text())
    manifest = {r["id"]: r for r in map(json.loads, (built["avmislabeled"] / MANIFEST).read_text().splitlines())}
    latents = [json.loads(line) for line in (built["avmislabeled"] / LATENT).read_text().splitlines()]
    mislabeled = [latent for latent in latents if "given_label" in latent]
    assert info["label_noise"] == noise and sum(info["mislabeled"].values()) == len(mislabeled)
    for latent in latents:
        given = latent.get("given_label", latent["label"])
        assert manifest[latent["id"]]["label"] == given
        assert latent["split"] in NOISY_SPLITS or given == latent["label"]
    assert "label_noise" not in json.loads((built["avnoisy"] / DATASET_INFO).read_text())


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_the_manifest_misses_exactly_the_planned_modalities(built, name):
    plans = {p.id: p for p in plan_records(name, 0, TINY, len(builder(name).classes))}
    for line in (built[name] / MANIFEST).read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        has = {
            "text": record.get("text") is not None or record.get("text_path") is not None,
            "image": record.get("image") is not None,
            "audio": record.get("audio") is not None,
        }
        assert {m for m in MODALITIES if not has[m]} == plans[record["id"]].missing


def test_same_seed_same_bytes_other_seed_other_data(built, tmp_path):
    again = _build("avdigits", tmp_path / "again")
    assert (again / MANIFEST).read_bytes() == (built["avdigits"] / MANIFEST).read_bytes()
    assert fingerprint(again) == fingerprint(built["avdigits"])
    other = _build("avdigits", tmp_path / "other", seed=1)
    assert (other / MANIFEST).read_bytes() != (built["avdigits"] / MANIFEST).read_bytes()


def test_avnotes_puts_avdigits_caption_inside_prose_that_names_no_number():
    notes = builder("avnotes")
    notes.load_sources(0)
    words = number_words()
    assert len(notes.prose) > 100
    assert not any(words & set(re.findall(r"\w+", sentence.lower())) for sentence in notes.prose)
    for plan in plan_records("avnotes", 0, 20, len(notes.classes)):
        caption, informative = AVDigits.text(notes, plan, np.random.default_rng(7))
        note, note_informative = notes.text(plan, np.random.default_rng(7))  # the same draws first: the same caption
        assert caption in note and note_informative == informative
        rest = [s for s in note.replace(caption, "").split(". ") if s.strip()]
        assert NOTE_SENTENCES[0] <= len(rest) <= NOTE_SENTENCES[1]
        assert all(s.strip().rstrip(".") + "." in notes.prose for s in rest)


def test_avsentences_speaks_the_digit_inside_prose_and_its_recordings_are_longer(built):
    """The digit word once, among SPOKEN_WORDS words of one prose sentence (none naming a number); the built
    recordings are longer than avdigits' (seconds in latent.jsonl)."""
    sentences = builder("avsentences")
    sentences.load_sources(0)
    numbers, prose_words = number_words(), {w for s in sentences.prose for w in re.sub(r"[.,;:]", "", s).split()}
    for plan in plan_records("avsentences", 0, 30, len(sentences.classes)):
        spoken = sentences.utterance(plan, np.random.default_rng(plan.index)).text.split()
        assert [w for w in spoken if w.lower() in numbers] == [DIGIT_WORDS[plan.label]]
        rest = list(spoken)
        rest.remove(DIGIT_WORDS[plan.label])
        assert SPOKEN_WORDS[0] <= len(rest) <= SPOKEN_WORDS[1] and set(rest) <= prose_words

    def median_seconds(name: str) -> float:
        rows = [json.loads(line) for line in (built[name] / LATENT).read_text(encoding="utf-8").splitlines()]
        return float(np.median([r["audio"]["seconds"] for r in rows if r.get("audio")]))

    assert median_seconds("avsentences") > 2 * median_seconds("avdigits")


@pytest.mark.parametrize(
    "damage", [sound.AudioDamage(snr_db=(3.0, 4.0), clip_probability=1.0), sound.AudioDamage(clip_probability=0.0)]
)
def test_recordings_take_snr_and_clipping_from_the_damage(damage):
    rate = 16000
    speech = (0.5 * np.sin(2 * np.pi * 220 * np.arange(rate // 4) / rate)).astype(np.float32)
    rng = np.random.default_rng(0)
    files = [sound.render_file(rng, speech, rate, damage) for _ in range(20)]
    assert all(damage.snr_db[0] <= f.snr_db <= damage.snr_db[1] for f in files)
    assert {f.clipped for f in files} == {damage.clip_probability == 1.0}


def test_avnoisy_is_avdigits_with_harsher_audio(built):
    assert builder("avnoisy").audio_damage == NOISY and builder("avdigits").audio_damage == sound.DEFAULT_DAMAGE
    assert NOISY.snr_db[1] < sound.SNR_DB[1] and NOISY.clip_probability > sound.CLIP_PROBABILITY
    for name, damage in (("avnoisy", NOISY), ("avdigits", sound.DEFAULT_DAMAGE)):
        latents = [json.loads(line) for line in (built[name] / LATENT).read_text().splitlines()]
        snrs = [latent["audio"]["snr_db"] for latent in latents if latent.get("audio")]
        assert len(snrs) > TINY / 2 and all(damage.snr_db[0] <= snr <= damage.snr_db[1] for snr in snrs)
    info = json.loads((built["avnoisy"] / DATASET_INFO).read_text())
    assert info["classes"] == list(AVDigits.classes) and info["name"] == "avnoisy"


def test_bayes_bounds_match_hand_computations():
    # the bundled sample's design (fusion/data/sample/__init__.py docstring): 0.360 / 0.662 / 0.842
    sample_groups = {
        "image": [c % 5 for c in range(10)],
        "audio": [c // 2 for c in range(10)],
        "text": [0, 1, 2, 0, 1, 2, 3, 4, 4, 3],
    }
    clean = {m: 0.65 / 0.9 for m in MODALITIES}
    assert bayes_accuracy(sample_groups, clean, ["image"], 0.1) == pytest.approx(0.360, abs=1e-3)
    assert bayes_accuracy(sample_groups, clean, ["image", "text"], 0.1) == pytest.approx(0.662, abs=1e-3)
    assert bayes_accuracy(sample_groups, clean, list(MODALITIES), 0.1) == pytest.approx(0.842, abs=1e-3)
    # unequal classes: the guess is the most frequent candidate. One modality, always present and informative,
    # that tells {0, 1} from {2, 3}: right for classes 0 and 2 (0.4 + 0.3); shown nothing, always class 0
    shares = [0.4, 0.1, 0.3, 0.2]
    pairs = {"image": [0, 0, 1, 1]}
    assert bayes_accuracy(pairs, {"image": 1.0}, ["image"], 0.0, shares) == pytest.approx(0.7)
    assert bayes_accuracy(pairs, {"image": 0.0}, ["image"], 0.0, shares) == pytest.approx(0.4)
    assert bayes_accuracy(pairs, {"image": 1.0}, ["image"], 0.0, [0.25] * 4) == pytest.approx(0.5)  # ties split
    assert bayes_accuracy(sample_groups, clean, ["image"], 0.1, [0.1] * 10) == pytest.approx(0.360, abs=1e-3)
    # postcards, image alone: present -> 1/2, missing -> 1/10
    p = 1 - MISSING_FRACTION + MISSING_FRACTION**3 / 3
    postcards = builder("postcards")
    assert expectations(postcards.groups, postcards.informative)["image"] == pytest.approx(
        p / 2 + (1 - p) / 10, abs=1e-4
    )


def _easy_dataset(root: Path) -> Path:
    """Two classes that every modality tells apart at a glance: dark vs light image, low vs high tone, a word."""
    rng = np.random.default_rng(0)
    for folder in ("image", "audio"):
        (root / folder).mkdir(parents=True)
    lines = []
    for i in range(EASY_RECORDS):
        label = i % 2
        split = ("train", "train", "train", "val", "test")[(i // 2) % 5]
        level = (40, 210)[label] + rng.normal(0, 10, (12, 12))
        Image.fromarray(np.clip(level, 0, 255).astype(np.uint8), "L").save(root / f"image/{i}.png")
        rate, tone = 8000, (300.0, 1500.0)[label]
        samples = (0.5 * np.sin(2 * np.pi * tone * np.arange(rate // 2) / rate) * 32767).astype("<i2")
        with wave.open(str(root / f"audio/{i}.wav"), "wb") as out:
            out.setnchannels(1), out.setsampwidth(2), out.setframerate(rate), out.writeframes(samples.tobytes())
        record = {
            "id": f"e{i}",
            "label": ("dark", "light")[label],
            "split": split,
            "text": ("a dark one", "a light one")[label],
            "image": f"image/{i}.png",
            "audio": f"audio/{i}.wav",
        }
        if i % 7 == 0:
            record["image"] = None  # some records miss a modality
        lines.append(json.dumps(record))
    (root / MANIFEST).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def easy(tmp_path_factory) -> rawdata.RawDataset:
    return rawdata.load(_easy_dataset(tmp_path_factory.mktemp("easy")), progress=False)


def _sane(result) -> None:
    assert set(result.alone) <= set(MODALITIES) and set(result.without) == set(MODALITIES)
    assert all(0.0 <= v <= 1.0 for v in [result.test_acc, *result.alone.values(), *result.without.values()])
    assert result.cpu_seconds >= result.fit_cpu_seconds > 0 and result.wall_seconds > 0


def test_decoding_marks_missing_modalities(easy):
    assert easy.classes == ["dark", "light"]
    assert (~easy.present["image"]).sum() == math.ceil(EASY_RECORDS / 7)
    assert easy.present["audio"].all() and easy.images[~easy.present["image"]].max() == 0.0


def test_logistic_regression_learns_an_easy_case(easy):
    result = logreg.run(easy, seed=0)
    _sane(result)
    assert result.test_acc >= 0.9 and min(result.alone.values()) >= 0.75


@pytest.mark.slow
def test_lenet_learns_an_easy_case(easy):
    result = lenet.run(easy, seed=0, epochs=EASY_EPOCHS)
    _sane(result)
    assert result.test_acc >= 0.8 and set(result.alone) == set(MODALITIES)


def test_late_fusion_averages_present_modalities_and_falls_back():
    probabilities = {
        "text": np.array([[0.9, 0.1], [0.6, 0.4], [0.5, 0.5]]),
        "image": np.array([[0.2, 0.8], [0.1, 0.9], [0.5, 0.5]]),
    }
    present = {"text": np.array([True, True, False]), "image": np.array([False, True, False])}
    # record 0: text only -> 0; record 1: mean (0.35, 0.65) -> 1; record 2: nothing present -> fallback 1
    assert late_fusion(probabilities, present, fallback=1).tolist() == [0, 1, 1]


def test_macro_f1_as_by_hand_and_as_the_project_logs_it():
    labels = np.array([0, 0, 1, 1, 2])
    predictions = np.array([0, 1, 1, 1, 1])
    # class 0: p 1, r 1/2 -> 2/3; class 1: p 2/4, r 1 -> 2/3; class 2: 0; class 3 never occurs: not averaged
    assert macro_f1(predictions, labels) == pytest.approx((2 / 3 + 2 / 3 + 0) / 3)
    from torchmetrics.classification import MulticlassF1Score

    rng = np.random.default_rng(0)
    labels, predictions = rng.integers(0, 6, 200), rng.integers(0, 5, 200)  # class 5 never predicted
    logged = MulticlassF1Score(6, average="macro")(torch.as_tensor(predictions), torch.as_tensor(labels))
    assert macro_f1(predictions, labels) == pytest.approx(float(logged), abs=1e-6)


def test_macro_f1_column_only_where_the_runs_hold_it():
    results = _fake_results()
    assert summary.F1_COLUMN not in summary.dataset_table(results, "d", {"project": "ours"}).columns
    for run_row in results["runs"]:
        if run_row["system"] == "project":
            run_row["test_f1_macro"] = 0.5 + 0.1 * run_row["seed"]
    results["datasets"]["d"].update(class_ratio=10.0, class_counts={"test": {"a": 2, "b": 1}})
    table = summary.dataset_table(results, "d", {"project": "ours", "lenet": "ln"})
    rows = [dict(zip(table.columns, row, strict=True)) for row in table.rows]
    assert rows[0][summary.F1_COLUMN] == "0.600 ± 0.100" and rows[1][summary.F1_COLUMN] == "n/a"
    assert any("the most frequent 10 times the rarest (test records per class: a 2, b 1)" in n for n in table.notes)
    results["datasets"]["d"].update(label_noise=0.2, mislabeled={"test": 0, "train": 7, "val": 2})
    notes = summary.dataset_table(results, "d", {"project": "ours"}).notes
    assert any(
        "20% of the training and validation labels wrong (7 and 2 records), the test labels right" in n for n in notes
    )
    lone = _fake_results()
    lone["runs"] = [r for r in lone["runs"] if r["system"] == "project"]  # no baseline, no modality alone: no check
    assert "acceptance checks" not in summary.section(lone, {"project": "ours"}, "cmd", "r.json")


def _fake_results() -> dict:
    accs = {"project": [0.70, 0.75, 0.83], "logreg": [0.6, 0.6, 0.6], "lenet": [0.65, 0.7, 0.75]}
    runs = []
    for system, values in accs.items():
        for seed, acc in enumerate(values):
            row = {
                "dataset": "d",
                "system": system,
                "seed": seed,
                "test_acc": acc,
                "cpu_seconds": 10.0 * (seed + 1),
                "fit_cpu_seconds": 5.0 * (seed + 1) if system == "project" else 12.0,
                "wall_seconds": 20.0,
                "fit_seconds": 5.0,
                "without": {m: 0.5 for m in MODALITIES},
                "error": None,
            }
            if system != "project":
                row["alone"] = {m: 0.4 for m in MODALITIES}
            runs.append(row)
    for m, acc in zip(MODALITIES, (0.3, 0.5, 0.45), strict=True):
        runs += [
            {
                "dataset": "d",
                "system": f"project-{m}",
                "seed": s,
                "test_acc": acc,
                "cpu_seconds": 1.0,
                "wall_seconds": 1.0,
                "error": None,
            }
            for s in range(3)
        ]
    runs.append({"dataset": "d", "system": "lenet", "seed": 3, "error": "RuntimeError: boom"})
    return {
        "runs": runs,
        "datasets": {"d": {"summary": "a test", "records": 9, "splits": {"test": 3}}},
        "machine": {
            "cpu": "x",
            "cores": 2,
            "torch_threads": 2,
            "python": "3",
            "torch": "2",
            "lightning": "2",
            "cuda_device": None,
        },
        "systems": {"project": "ours", "logreg": "lr", "lenet": "ln"},
        "settings": {"seeds": [0, 1, 2], "records": None},
    }


def test_mean_and_std_as_by_hand():
    # mean 0.76; sample std sqrt((0.06² + 0.01² + 0.07²) / 2) = 0.0656
    assert summary.format_mean_std([0.70, 0.75, 0.83], 3) == "0.760 ± 0.066"
    assert summary.format_mean_std([0.5], 3) == "0.500" and summary.format_mean_std([], 3) == "n/a"
    table = summary.dataset_table(_fake_results(), "d", {"project": "ours", "logreg": "lr", "lenet": "ln"})
    ours = dict(zip(table.columns, table.rows[0], strict=True))
    assert ours["test acc"] == "0.760 ± 0.066" and ours["CPU s"] == "20 ± 10" and ours["fit CPU s"] == "10 ± 5"
    assert ours["text alone"] == "0.300 ± 0.000" and ours["image alone"] == "0.500 ± 0.000"
    lenet_row = dict(zip(table.columns, table.rows[2], strict=True))
    assert lenet_row["test acc"] == "0.700 ± 0.050" and "1 failed" in lenet_row["seeds"]


def test_acceptance_checks_compare_with_the_better_baseline():
    checks = {row[0]: row for row in summary.checks_table(_fake_results(), "d").rows}
    beat = next(v for k, v in checks.items() if k.startswith("defaults beat"))
    assert "(lenet): +6.0 points" in beat[1] and beat[2] == "PASS"
    cpu = next(v for k, v in checks.items() if "CPU" in k)
    assert cpu[1] == "10 s vs 12 s" and cpu[2] == "PASS"  # fit CPU seconds: ours 10 on average, lenet 12
    assert next(v for k, v in checks.items() if "modality=text" in k)[2] == "FAIL"  # 0.30 < 0.40


def test_section_replaces_only_between_the_markers():
    section = f"{summary.START}\nnew\n{summary.END}\n"
    document = f"# Results\n\nkept above\n\n{summary.START}\nold\n{summary.END}\n\n## kept below\n"
    replaced = summary.replace_section(document, section)
    assert replaced == f"# Results\n\nkept above\n\n{summary.START}\nnew\n{summary.END}\n\n## kept below\n"
    assert summary.replace_section(replaced, section) == replaced
    assert summary.replace_section("# Results\n", section) == f"# Results\n\n{section}"


def test_section_says_when_it_is_preliminary():
    full = summary.section(_fake_results(), {"project": "ours"}, "cmd", "r.json")
    preliminary = _fake_results()
    preliminary["settings"] = {"seeds": [0], "records": 300}
    assert "Preliminary" not in full
    assert "**Preliminary**: 300 records" in summary.section(preliminary, {"project": "ours"}, "cmd", "r.json")


def test_section_of_a_run_still_going_reads_its_load_without_a_finish():
    """results.json is saved after every run: its table can be drawn while the benchmark is still running."""
    going = {**_fake_results(), "load_average": {"started": 0.5}}  # its machine has 2 cores
    assert "started / finished: 0.5 / (still running) on 2 cores" in summary.section(
        going, {"project": "ours"}, "cmd", "r.json"
    )
    going["load_average"]["finished"] = 1.25
    assert "0.5 / 1.2 on 2 cores" in summary.section(going, {"project": "ours"}, "cmd", "r.json")


def test_tables_list_the_systems_in_the_catalogues_order_whatever_the_saved_order(tmp_path):
    """results.json is saved with sorted keys; a table drawn again from it lists this project first."""
    results = _fake_results()
    results["systems"] = dict(sorted(results["systems"].items()))  # lenet, logreg, project
    text = summary.publish(results, tmp_path / "results.json", tmp_path / "accuracy.md", None)
    rows = [line for line in text.splitlines() if line.startswith("| ours") or line.startswith("| l")]
    assert [row.split(" |")[0] for row in rows[:3]] == ["| ours", "| lr", "| ln"]


def test_tuned_overrides_and_system_selection(tmp_path):
    assert all("=" in o for o in tuned_overrides())  # the shipped tuned.yaml parses
    (tmp_path / "t.yaml").write_text("- fusion=late\n- trainer.max_epochs=40\n", encoding="utf-8")
    tuned = tuned_overrides(tmp_path / "t.yaml")
    assert tuned == ("fusion=late", "trainer.max_epochs=40")
    assert TUNED not in [s.name for s in select(None, ())] and TUNED in [s.name for s in select(None, tuned)]
    (tmp_path / "bad.yaml").write_text("fusion: late\n", encoding="utf-8")
    with pytest.raises(SystemExit, match="YAML list"):
        tuned_overrides(tmp_path / "bad.yaml")
    with pytest.raises(SystemExit, match="unknown system"):
        select("project,nope", ())


def test_set_overrides_are_checked_routed_and_named_in_the_labels():
    args = parse_args(["run", "--set", "fusion=gated", "--set", "preprocess.audio.n_mels=32"])
    overrides = checked_overrides(args.overrides)
    assert overrides == ("fusion=gated", "preprocess.audio.n_mels=32")
    assert preprocess_only(overrides) == ("preprocess.audio.n_mels=32",)
    assert parse_args(["run"]).overrides == []
    for bad in ("fusion", "=gated", " =x"):
        with pytest.raises(SystemExit, match="KEY=VALUE"):
            checked_overrides([bad])
    labels = summary.labels(select("project,project-text,lenet", ()), overrides)
    assert labels["project"].endswith(", with fusion=gated preprocess.audio.n_mels=32")
    assert labels["project-text"].endswith("with fusion=gated preprocess.audio.n_mels=32")
    assert "with" not in labels["lenet"]
    assert summary.labels(select("project", ()))["project"] == select("project", ())[0].label


def test_resume_refuses_runs_trained_with_other_overrides(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    kept = {
        "runs": [{"dataset": "avdigits", "system": "project", "seed": 0, "error": None, "run_id": "abc"}],
        "datasets": {},
        "settings": {"project_overrides": ["fusion=gated"]},
    }
    (out / "results.json").write_text(json.dumps(kept), encoding="utf-8")
    settings = Settings(["avdigits"], [0], [], out, tmp_path, resume=True, project_overrides=("fusion=gated",))
    assert run_module.load_results(settings)["runs"] == kept["runs"]
    with pytest.raises(SystemExit, match=r"overrides \['fusion=gated'\].*would add none"):
        run_module.load_results(dataclasses.replace(settings, project_overrides=()))


def test_subprocess_errors_and_timeouts_name_the_log(tmp_path):
    log = tmp_path / "step.log"
    timing = project.run_logged([sys.executable, "-c", "print('hello')"], tmp_path, log, timeout=60)
    assert timing.wall > 0 and "hello" in log.read_text(encoding="utf-8")
    with pytest.raises(project.StepFailed, match=r"exited with 3: ValueError: bad.*step\.log"):
        project.run_logged(
            [sys.executable, "-c", "print('ValueError: bad'); raise SystemExit(3)"], tmp_path, log, timeout=60
        )
    with pytest.raises(project.StepFailed, match="timeout"):
        project.run_logged([sys.executable, "-c", "import time; time.sleep(30)"], tmp_path, log, timeout=1)


def _ensure_in_a_process(data_dir: str, queue) -> None:
    said: list[str] = []
    settings = Settings(["avdigits"], [0], [], Path(data_dir) / "out", Path(data_dir), records=TINY, say=said.append)
    try:
        queue.put((said, fingerprint(run_module.ensure_dataset(settings, "avdigits"))))
    except Exception as error:  # reported, so the test fails at once instead of waiting on the queue
        queue.put((said, repr(error)))


def test_runs_started_together_build_a_dataset_once(espeak, tmp_path):
    """Two runs sharing a data dir (the systems split over two processes): one builds, the other waits for it."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    workers = [context.Process(target=_ensure_in_a_process, args=(str(tmp_path), queue)) for _ in range(2)]
    for worker in workers:
        worker.start()
    reports = [queue.get(timeout=300) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
    assert sorted(len(said) for said, _ in reports) == [0, 1]  # one said "building", the other found it built
    assert reports[0][1] == reports[1][1] == fingerprint(tmp_path / f"avdigits-n{TINY}-s0")


def _tiny_avdigits_run(built, tmp_path: Path, systems: str, **settings) -> Settings:
    """A run of `systems` on a copy of the built tiny avdigits, seed 0 (the copy is found, not rebuilt)."""
    data_dir = tmp_path / "data"
    shutil.copytree(built["avdigits"], data_dir / f"avdigits-n{TINY}-s0")
    return Settings(
        datasets=["avdigits"],
        seeds=[0],
        systems=select(systems, ()),
        out=tmp_path / "out",
        data_dir=data_dir,
        records=TINY,
        say=lambda _: None,
        **settings,
    )


@pytest.mark.slow
def test_runner_writes_results_and_the_markdown_section(built, tmp_path, monkeypatch):
    monkeypatch.setattr(run_module, "describe", lambda device: _fake_results()["machine"])  # spares importing Lightning
    markdown = tmp_path / "RESULTS.md"
    markdown.write_text("# Benchmark results\n\nspeed tables\n", encoding="utf-8")
    settings = _tiny_avdigits_run(built, tmp_path, "logreg", markdown=markdown)
    data_dir = settings.data_dir
    results = run(settings)
    assert [(r["system"], r["seed"]) for r in results["runs"]] == [("logreg", 0)]
    assert all(r["error"] is None for r in results["runs"])
    saved = json.loads((tmp_path / "out" / "results.json").read_text(encoding="utf-8"))
    assert saved["runs"] == json.loads(json.dumps(results["runs"]))
    text = markdown.read_text(encoding="utf-8")
    assert text.startswith("# Benchmark results\n\nspeed tables\n") and text.rstrip().endswith(summary.END)
    assert "logistic regression per modality" in text and "(out/results.json)" in text
    root = data_dir / f"avdigits-n{TINY}-s0"
    assert saved["datasets"]["avdigits"]["fingerprint"] == fingerprint(built["avdigits"]) == fingerprint(root)
    _flip_last_byte(sorted((root / "audio").iterdir())[0])
    with pytest.raises(SystemExit, match="not the avdigits data the kept runs of --resume"):
        run(dataclasses.replace(settings, resume=True))


def _own_dataset(built, tmp_path: Path, drop: str | None = None) -> Path:
    """A dataset of one's own: a copy of the built tiny avdigits without its dataset.json and latent.jsonl (only the
    benchmark's builders write them), and without the `drop` modality in every record."""
    root = tmp_path / "my-records"
    shutil.copytree(built["avdigits"], root)
    for name in (DATASET_INFO, LATENT):
        (root / name).unlink()
    if drop:
        rows = [json.loads(line) for line in (root / MANIFEST).read_text(encoding="utf-8").splitlines()]
        rows = [{k: v for k, v in r.items() if k != drop} for r in rows]
        rows = [r for r in rows if any(r.get(k) is not None for k in ("text", "text_path", "image", "audio"))]
        (root / MANIFEST).write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        shutil.rmtree(root / drop)
    return root


@pytest.mark.slow
def test_a_dataset_of_ones_own_runs_the_baselines_on_the_modalities_it_holds(built, tmp_path, monkeypatch):
    """`run --datasets <folder>`: no build, named by the folder; the baselines fuse the modalities it holds, a
    modality-alone system of a modality it lacks is skipped, and the table says what the data is."""
    monkeypatch.setattr(run_module, "describe", lambda device: _fake_results()["machine"])
    root = _own_dataset(built, tmp_path, drop="audio")
    said = []
    settings = Settings(
        datasets=[str(root)],
        seeds=[0],
        systems=select("project,project-audio,logreg,lenet", ()),
        out=tmp_path / "out",
        data_dir=tmp_path / "data",
        project_overrides=("trainer.max_epochs=1",),
        baseline_epochs=2,
        say=said.append,
    )
    results = run(settings)
    assert not (tmp_path / "data").exists()  # nothing built
    assert [(r["dataset"], r["system"], r["error"]) for r in results["runs"]] == [
        ("my-records", "project", None),
        ("my-records", "logreg", None),
        ("my-records", "lenet", None),
    ]
    assert results["runs"][0]["overrides"] == ["modality=text+image", "trainer.max_epochs=1"]
    assert set(results["runs"][0]["without"]) == {"text", "image"}
    assert any("skipping project-audio: the dataset holds no such modality" in line for line in said)
    info = results["datasets"]["my-records"]
    assert info["modalities"] == ["text", "image"] and info["path"] == str(root)
    assert info["fingerprint"] == fingerprint(root)
    for row in results["runs"][1:]:
        assert set(row["alone"]) == set(row["without"]) == {"text", "image"}
    text = (tmp_path / "out" / "accuracy.md").read_text(encoding="utf-8")
    assert f"my-records: your dataset ({root})" in text and "holding text+image" in text
    assert "Bayes" not in text and "dataset seed" not in text and "`build` prints it" not in text


def test_a_dataset_folder_of_ones_own_must_hold_a_manifest_and_splits(built, tmp_path):
    with pytest.raises(SystemExit, match="or give a folder that holds a manifest.jsonl"):
        main(["run", "--datasets", str(tmp_path), "--out", str(tmp_path / "out")])
    root = _own_dataset(built, tmp_path)
    rows = [json.loads(line) for line in (root / MANIFEST).read_text(encoding="utf-8").splitlines()]
    (root / MANIFEST).write_text("".join(json.dumps({**r, "split": None}) + "\n" for r in rows), encoding="utf-8")
    with pytest.raises(SystemExit, match="have no split"):
        run_module.own_info(root)


@pytest.mark.slow
def test_set_overrides_reach_the_preprocessing_and_the_training_run(built, tmp_path, monkeypatch):
    """`run --set ...`: the preprocess.* override makes shards of its own, every override reaches train.py (MLflow
    params), and the row and the label name them."""
    monkeypatch.setattr(run_module, "describe", lambda device: _fake_results()["machine"])
    overrides = ("trainer.max_epochs=1", "fusion=gated", "preprocess.audio.n_mels=32")
    results = run(_tiny_avdigits_run(built, tmp_path, "project", project_overrides=overrides))
    (row,) = results["runs"]
    assert row["error"] is None and row["overrides"] == list(overrides)
    processed = Path(row["run_dir"]).parents[1] / f"processed-{hashlib.sha256(overrides[2].encode()).hexdigest()[:8]}"
    assert json.loads((processed / "audio" / "meta.json").read_text(encoding="utf-8"))["n_mels"] == 32
    params = (
        MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'out' / 'work' / 'mlflow' / 'mlflow.db'}")
        .get_run(row["run_id"])
        .data.params
    )
    assert (params["fusion/name"], params["preprocess/audio/n_mels"], params["trainer/max_epochs"]) == (
        "gated",
        "32",
        "1",
    )
    assert results["systems"]["project"].endswith("with " + " ".join(overrides))
    # each group of test records holding the same modalities: its accuracy and count, adding up to the test split's
    groups = row["holding"]
    assert "text+image+audio" in groups
    records = sum(g["records"] for g in groups.values())
    assert sum(g["acc"] * g["records"] for g in groups.values()) / records == pytest.approx(row["test_acc"], abs=1e-6)


def test_holding_groups_read_back_the_modalities_from_the_metric_names():
    metrics = {
        "test/acc": 0.9,
        "test/acc_holding_text_image_audio": 1.0,
        "test/records_holding_text_image_audio": 8.0,
        "test/acc_holding_audio": 0.5,
        "test/records_holding_audio": 2.0,
        "test/acc_without_audio": 0.4,
    }
    assert project.holding_groups(metrics) == {
        "audio": {"acc": 0.5, "records": 2.0},
        "text+image+audio": {"acc": 1.0, "records": 8.0},
    }


def _variant_results(tmp_path: Path, name: str, correct: dict[int, list[int]], **settings) -> tuple[dict, Path]:
    """A results.json of project runs whose run folders hold test_records.csv with the given outcomes per seed."""
    out = tmp_path / name
    runs = []
    for seed, outcomes in correct.items():
        run_dir = out / "work" / "d" / "runs" / f"project-s{seed}"
        run_dir.mkdir(parents=True)
        lines = ["id,target,prediction,correct"] + [f"r{i},0,{1 - c},{c}" for i, c in enumerate(outcomes)]
        (run_dir / paired.TEST_RECORDS).write_text("\n".join(lines) + "\n", encoding="utf-8")
        acc = sum(outcomes) / len(outcomes)
        runs.append(
            {"dataset": "d", "system": "project", "seed": seed, "error": None, "test_acc": acc, "fit_cpu_seconds": 10.0}
            | {"run_dir": str(run_dir)}
        )
    results = {"runs": runs, "datasets": {"d": {"fingerprint": "f" * 64}}, "settings": settings}
    path = out / "results.json"
    path.write_text(json.dumps(results), encoding="utf-8")
    return results, path


def test_variants_are_compared_record_by_record(tmp_path):
    records = 40
    reference = _variant_results(tmp_path, "ref", {0: [1] * 30 + [0] * 10, 1: [1] * 28 + [0] * 12})
    better = _variant_results(
        tmp_path, "better", {0: [1] * 40, 1: [1] * 38 + [0] * 2, 2: [1] * 40}, project_overrides=["fusion=gated"]
    )
    (row,) = variants.compare(reference, [better])
    assert row.seeds == [0, 1] and row.label == "fusion=gated" and row.acc == [1.0, 0.95]  # seed 2: reference lacks it
    # per record, averaged over seeds 0 and 1: by hand (1 + 0.95) / 2 - (0.75 + 0.70) / 2
    assert row.difference.estimate == pytest.approx((40 + 38 - 30 - 28) / (2 * records))
    assert row.difference.significant and row.difference.low > 0
    same = _variant_results(tmp_path, "same", {0: [1] * 30 + [0] * 10, 1: [1] * 28 + [0] * 12}, checkout="/x/edited")
    (level,) = variants.compare(reference, [same])
    assert level.difference.estimate == 0 and not level.difference.significant and level.label == "edited"
    text = format_text(variants.table([row, level], *reference))
    assert "ref (reference)" in text and "+0.250" in text and "fusion=gated" in text
    other, path = _variant_results(tmp_path, "other", {0: [1] * 40})
    other["datasets"]["d"]["fingerprint"] = "e" * 64
    with pytest.raises(ValueError, match="other files"):
        variants.compare(reference, [(other, path)])
    shorter = _variant_results(tmp_path, "shorter", {0: [1] * 39})
    with pytest.raises(ValueError, match="test records .* differ"):
        variants.compare(reference, [shorter])


def test_variants_command_names_what_is_wrong(tmp_path):
    with pytest.raises(SystemExit, match="missing: give the results.json"):
        main(["variants", str(tmp_path / "nope.json"), str(tmp_path / "nope2.json")])
    reference = _variant_results(tmp_path, "ref", {0: [1, 0]})
    lone = _variant_results(tmp_path, "lone", {5: [1, 1]})
    with pytest.raises(SystemExit, match="no dataset and seed holds"):
        main(["variants", str(reference[1]), str(lone[1])])


def _grouped_dataset(tmp_path: Path) -> Path:
    """Four test records: all three modalities telling; the audio alone (no picture, an uninformative caption);
    the picture alone (no audio, no caption); avunrelated-like audio (never informative) next to a picture."""
    folder = tmp_path / "data"
    folder.mkdir()
    latents = [
        {"id": "r0", "text": {"informative": True}, "image": {}, "audio": {}},
        {"id": "r1", "text": {"informative": False}, "image": None, "audio": {}},
        {"id": "r2", "image": {}},
        {"id": "r3", "text": None, "image": {}, "audio": {"informative": False}},
    ]
    (folder / LATENT).write_text("".join(json.dumps(x) + "\n" for x in latents), encoding="utf-8")
    info = {"name": "d", "informative": {"text": 0.65, "image": 1.0, "audio": 1.0}}
    (folder / DATASET_INFO).write_text(json.dumps(info), encoding="utf-8")
    return folder


def test_groups_count_the_modalities_that_tell_and_average_each_system_over_seeds(tmp_path):
    folder = _grouped_dataset(tmp_path)
    assert groups.record_groups(folder) == {"r0": "text+image+audio", "r1": "audio", "r2": "image", "r3": "image"}
    # a modality the dataset never makes informative tells nothing even where the record does not say so
    assert groups.telling_modalities({"audio": {}}, {"audio": 0.0}) == groups.NOTHING
    results, path = _variant_results(tmp_path, "runs", {0: [1, 0, 1, 1], 1: [1, 1, 0, 1]})
    by_system = groups.accuracy_by_group(results, path, groups.record_groups(folder), "d")
    assert by_system == {"project": {"text+image+audio": (1.0, 1), "audio": (0.5, 1), "image": (0.75, 2)}}
    text = format_text(groups.table(by_system, {"project": "this project, defaults"}, "d"))
    lines = text.splitlines()
    assert "this project, defaults" in lines[1]
    # most telling modalities first, then most records
    assert [line.split()[0] for line in lines[3:6]] == ["text+image+audio", "image", "audio"]


def test_groups_command_names_what_is_wrong(tmp_path, capsys):
    folder = _grouped_dataset(tmp_path)
    _, path = _variant_results(tmp_path, "runs", {0: [1, 0, 1, 1]})
    main(["groups", str(path), str(folder), "--markdown"])
    assert "| image | 2 | 1.000 |" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="nope.json is missing"):
        main(["groups", str(tmp_path / "nope.json"), str(folder)])
    with pytest.raises(SystemExit, match="latent.jsonl is missing: give the dataset folder"):
        main(["groups", str(path), str(tmp_path)])
    (folder / LATENT).write_text(json.dumps({"id": "r0", "image": {}}) + "\n", encoding="utf-8")
    with pytest.raises(SystemExit, match="test record r1 of project is not in the dataset's latent.jsonl"):
        main(["groups", str(path), str(folder)])


def _flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))


def test_fingerprint_tells_one_changed_byte(built, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(built["avdigits"], copy)
    assert fingerprint(copy) == fingerprint(built["avdigits"])
    _flip_last_byte(sorted((copy / "image").iterdir())[0])
    assert fingerprint(copy) != fingerprint(built["avdigits"])


def _relative_links(text: str) -> list[str]:
    return [link for link in re.findall(r"\]\(([^)#]+)\)", text) if "://" not in link]


@pytest.mark.parametrize("where", ["RESULTS.md", "deeper/twice/RESULTS.md"])
@pytest.mark.parametrize("tables", ["out/accuracy.md", "elsewhere/deep/accuracy.md"])
def test_published_links_resolve_from_each_file_written(tmp_path, where, tables):
    results_path = tmp_path / "out" / "results.json"
    results_path.parent.mkdir()
    results_path.write_text("{}", encoding="utf-8")
    markdown, tables_path = tmp_path / where, tmp_path / tables
    for folder in (markdown.parent, tables_path.parent):
        folder.mkdir(parents=True, exist_ok=True)
    summary.publish(_fake_results(), results_path, tables_path, markdown)
    for written in (markdown, tables_path):
        links = _relative_links(written.read_text(encoding="utf-8"))
        assert len(links) == 2 and any(link.endswith("accuracy/README.md") for link in links), links
        assert not any(Path(link).is_absolute() for link in links), links
        assert all((written.parent / link).resolve().is_file() for link in links), (written, links)


BENCHMARKS = summary.README.parents[1]
COMMITTED_TABLES = sorted(
    str(p.relative_to(BENCHMARKS))
    for p in [BENCHMARKS / "RESULTS.md", *(BENCHMARKS / "results").rglob("*.md")]
    if "accuracy:start" in p.read_text(encoding="utf-8")
)


@pytest.mark.parametrize("markdown", COMMITTED_TABLES)
def test_committed_benchmark_results_link_to_files_that_exist(markdown):
    path = BENCHMARKS / markdown
    links = _relative_links(path.read_text(encoding="utf-8"))
    assert links and not any(Path(link).is_absolute() for link in links), links
    assert all((path.parent / link).resolve().is_file() for link in links), links


def test_every_committed_accuracy_table_is_checked():
    assert {"RESULTS.md", "results/accuracy/accuracy.md", "results/accuracy-avnoisy/dataset-seed-1/accuracy.md"} <= set(
        COMMITTED_TABLES
    )


def test_mcnemar_exact_as_by_hand():
    assert paired.mcnemar_exact(0, 0) == 1.0 and paired.mcnemar_exact(3, 3) == 1.0  # capped at 1
    assert paired.mcnemar_exact(1, 4) == pytest.approx(2 * (1 + 5) / 2**5)  # 0.375
    assert paired.mcnemar_exact(0, 5) == pytest.approx(2 / 2**5) == paired.mcnemar_exact(5, 0)


def _fake_project_run(run_dir: Path, modality: str, classes: list[str], predicted: dict[str, str]) -> None:
    """The two files of a train.py run folder that the paired test reads."""
    (run_dir / "bundle" / "preprocess" / modality).mkdir(parents=True)
    (run_dir / "bundle" / "preprocess" / modality / "meta.json").write_text(json.dumps({"classes": classes}))
    rows = ["id,target,prediction,correct"] + [f"{rid},0,{classes.index(c)},0" for rid, c in predicted.items()]
    (run_dir / "test_records.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")


def test_paired_counts_the_records_only_one_model_gets_right(easy, tmp_path):
    test = easy.split("test")
    probabilities, _, _ = logreg.fit_modality(easy, "image", 0)
    baseline = np.where(easy.present["image"][test], probabilities[test].argmax(1), majority_class(easy))
    baseline_errors = int(np.sum(baseline != easy.labels[test]))
    assert baseline_errors > 0  # the records without an image get the majority class: half of them wrong
    runs = []
    for seed, answer in ((0, easy.labels[test]), (1, baseline)):  # seed 0 always right, seed 1 answers as LR
        run_dir = tmp_path / f"run{seed}"
        # the model's class order differs from the raw data's: the bundle's meta.json must be used
        predicted = {easy.ids[i]: easy.classes[int(a)] for i, a in zip(test, answer, strict=True)}
        _fake_project_run(run_dir, "image", easy.classes[::-1], predicted)
        runs.append({"dataset": "easy", "system": "project-image", "seed": seed, "run_dir": str(run_dir)})
    runs.append({"dataset": "easy", "system": "project-image", "seed": 2, "error": "RuntimeError: failed"})
    # a recorded folder that is gone: looked for where `run` puts it under the results folder, and named
    runs.append({"dataset": "easy", "system": "project-text", "seed": 0, "run_dir": str(tmp_path / "gone")})
    right, same = paired.compare({"runs": runs}, tmp_path / "results.json", easy, "easy", "image")
    assert (right.ours, right.baseline_only, right.ours_only) == (1.0, 0, baseline_errors)
    assert right.p_value == paired.mcnemar_exact(0, baseline_errors)
    assert paired.verdict(right) == ("ours ahead" if right.p_value < paired.SIGNIFICANCE else "no")
    assert (same.ours_only, same.baseline_only, same.p_value, same.ours == same.baseline) == (0, 0, 1.0, True)
    with pytest.raises(FileNotFoundError, match="work/easy/runs/project-text-s0/test_records.csv is missing"):
        paired.compare({"runs": runs}, tmp_path / "results.json", easy, "easy", "text")


def test_paired_command_names_what_is_wrong(tmp_path):
    from benchmarks.accuracy.__main__ import main

    results = tmp_path / "results.json"
    results.write_text(json.dumps({"runs": []}), encoding="utf-8")
    with pytest.raises(SystemExit, match="unknown modality.*sound; choose from text, image, audio"):
        main(["paired", str(results), str(tmp_path), "--modalities", "text,sound"])
    with pytest.raises(SystemExit, match=r"nowhere/dataset.json is missing: give the dataset folder"):
        main(["paired", str(results), str(tmp_path / "nowhere")])


def test_avunrelated_recordings_say_digits_unrelated_to_the_label(built):
    """avnoisy's recordings say the record's digit; avunrelated's say one drawn apart from it, and the bounds count
    the audio as telling nothing."""

    def spoken_and_label(name: str) -> list[tuple[int, int]]:
        latents = [json.loads(line) for line in (built[name] / LATENT).read_text().splitlines()]
        pairs = []
        for latent in latents:
            if latent.get("audio"):
                (word,) = [w for w in latent["audio"]["words"].split() if w in DIGIT_WORDS]
                pairs.append((DIGIT_WORDS.index(word), int(latent["label"])))
        return pairs

    assert all(said == label for said, label in spoken_and_label("avnoisy"))
    unrelated = spoken_and_label("avunrelated")
    assert sum(said != label for said, label in unrelated) > len(unrelated) / 2
    bounds = json.loads((built["avunrelated"] / DATASET_INFO).read_text())["bayes_optimal_accuracy"]
    assert bounds["text+audio"] == bounds["text"] and bounds["text+image+audio"] == bounds["text+image"]
    assert bounds["audio"] < bounds["text"]
