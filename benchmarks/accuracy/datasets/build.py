"""Build a benchmark dataset folder in the project's data contract: manifest.jsonl, text/, image/, audio/, plus
latent.jsonl (what was done to each record, for analyses) and dataset.json (counts and Bayes expectations).

The folder is written under a temporary name and renamed into place, so an interrupted build never leaves a
folder that looks complete. The same name, record count and seed give byte-identical files where the
environment is the same (espeak-ng, NumPy, SciPy, Pillow, libsndfile); `fingerprint` tells whether two folders
hold the same bytes.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import shutil
from pathlib import Path
from typing import Any

from tqdm import tqdm

from benchmarks.accuracy.datasets import imaging, sound
from benchmarks.accuracy.datasets.base import DatasetBuilder
from benchmarks.accuracy.datasets.bayes import expectations
from benchmarks.accuracy.datasets.describe import describe
from benchmarks.accuracy.datasets.plan import MISSING_FRACTION, RecordPlan, class_shares, plan_records, record_rng
from benchmarks.accuracy.datasets.speech import require_espeak, speak
from benchmarks.accuracy.datasets.typos import sloppy

MANIFEST, LATENT, DATASET_INFO = "manifest.jsonl", "latent.jsonl", "dataset.json"
FOLDERS = {"text": "text", "image": "image", "audio": "audio"}
TEXT_FILE_PROBABILITY = 0.40  # texts stored in text/<id>.txt (text_path) rather than inline


def fingerprint(root: Path) -> str:
    """SHA-256 over every file of a dataset folder (its path and contents, in path order): two folders with the
    same fingerprint hold the same bytes, so results measured on them saw the same data."""
    root = Path(root)
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def build(
    builder: DatasetBuilder, out: Path, records: int | None = None, seed: int = 0, progress: bool = True
) -> dict[str, Any]:
    """Write the dataset to `out` (replacing what is there) and return its dataset.json content."""
    require_espeak()
    records = builder.default_records if records is None else int(records)
    shares = class_shares(len(builder.classes), builder.class_ratio) if builder.class_ratio != 1 else None
    plans = plan_records(
        builder.name,
        seed,
        records,
        len(builder.classes),
        class_ratio=builder.class_ratio,
        label_noise=builder.label_noise,
    )
    builder.load_sources(seed)
    out = Path(out)
    work = out.parent / f".{out.name}.building-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    for folder in FOLDERS.values():
        (work / folder).mkdir(parents=True)
    entries, latents = [], []
    for plan in tqdm(plans, desc=f"build {builder.name}", unit="record", disable=not progress):
        entry, latent = write_record(builder, plan, work, seed)
        entries.append(entry)
        latents.append(latent)
    _write_lines(work / MANIFEST, entries)
    _write_lines(work / LATENT, latents)
    info = {
        "name": builder.name,
        "summary": builder.summary,
        "description": _docstring(builder),
        "records": records,
        "seed": seed,
        "classes": list(builder.classes),
        "missing_fraction": MISSING_FRACTION,
        "groups": {m: list(g) for m, g in builder.groups.items()},
        "informative": dict(builder.informative),
        "bayes_optimal_accuracy": expectations(builder.groups, builder.informative, shares=shares),
        "bayes_note": (
            "Bayes-optimal test accuracy per subset of modalities if each present modality revealed "
            "exactly its group when informative (informative: the probability of that); real images "
            "and speech are never fully legible, so these are upper bounds."
        ),
        **describe(latents),
        **_class_balance(builder, plans),
        **_label_noise(builder, plans),
    }
    (work / DATASET_INFO).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    _replace(work, out)
    return info


def _class_balance(builder: DatasetBuilder, plans: list[RecordPlan]) -> dict[str, Any]:
    """dataset.json's record of a long-tailed design (nothing for balanced classes, whose files stay as they were):
    the ratio and how many records of each class every split holds."""
    if builder.class_ratio == 1:
        return {}
    counts = {
        split: {name: sum(p.label == c and p.split == split for p in plans) for c, name in enumerate(builder.classes)}
        for split in sorted({p.split for p in plans})
    }
    return {"class_ratio": builder.class_ratio, "class_counts": counts}


def _label_noise(builder: DatasetBuilder, plans: list[RecordPlan]) -> dict[str, Any]:
    """dataset.json's record of label noise (nothing without it): the share and how many records of each split
    name a wrong class (latent.jsonl's given_label says which)."""
    if not builder.label_noise:
        return {}
    wrong = {
        split: sum(p.given is not None and p.split == split for p in plans)
        for split in sorted({p.split for p in plans})
    }
    return {"label_noise": builder.label_noise, "mislabeled": wrong}


def write_record(builder: DatasetBuilder, plan: RecordPlan, root: Path, seed: int) -> tuple[dict, dict]:
    """Render and write one record's files (from its true class); its manifest entry (the class the manifest gives)
    and its latent description (the true class, and the given one where they differ)."""
    entry: dict[str, Any] = {"id": plan.id, "label": builder.classes[plan.manifest_label], "split": plan.split}
    latent: dict[str, Any] = {"id": plan.id, "label": builder.classes[plan.label], "split": plan.split}
    if plan.given is not None:
        latent["given_label"] = entry["label"]
    for modality in FOLDERS:
        if not plan.has(modality):
            if plan.index % 2:  # the contract allows both: a null value or no key at all
                entry[modality] = None
            latent[modality] = None
            continue
        rng = record_rng(builder.name, seed, plan.index, modality)
        latent[modality] = WRITERS[modality](builder, plan, rng, root, entry)
    return entry, latent


def _write_text(builder, plan, rng, root, entry) -> dict:
    text, informative = builder.text(plan, rng)
    text = sloppy(rng, text)
    if rng.random() < TEXT_FILE_PROBABILITY:
        relative = f"{FOLDERS['text']}/{plan.id}.txt"
        (root / relative).write_text(text, encoding="utf-8")
        entry["text_path"] = relative
        storage = "file"
    else:
        entry["text"] = text
        storage = "inline"
    return {"informative": informative, "storage": storage, "chars": len(text)}


def _write_image(builder, plan, rng, root, entry) -> dict:
    encoded = imaging.render_file(rng, builder.image(plan, rng))
    relative = f"{FOLDERS['image']}/{plan.id}.{encoded.extension}"
    (root / relative).write_bytes(encoded.data)
    entry["image"] = relative
    return {
        "format": encoded.extension,
        "mode": encoded.mode,
        "width": encoded.size[0],
        "height": encoded.size[1],
        "damage": list(encoded.damage),
    }


def _write_audio(builder, plan, rng, root, entry) -> dict:
    utterance = builder.utterance(plan, rng)
    speech, rate = speak(utterance)
    encoded = sound.render_file(rng, speech, rate, builder.audio_damage)
    relative = f"{FOLDERS['audio']}/{plan.id}.{encoded.extension}"
    (root / relative).write_bytes(encoded.data)
    entry["audio"] = relative
    return {
        "format": encoded.extension,
        "sample_rate": encoded.sample_rate,
        "channels": encoded.channels,
        "seconds": round(encoded.seconds, 3),
        "snr_db": round(encoded.snr_db, 2),
        "noise": encoded.noise,
        "clipped": encoded.clipped,
        "words": utterance.text,
        "voice": utterance.voice,
        "speed": utterance.speed,
        "pitch": utterance.pitch,
    }


WRITERS = {"text": _write_text, "image": _write_image, "audio": _write_audio}


def _write_lines(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def _docstring(builder: DatasetBuilder) -> str:
    """The dataset module's docstring: its design, written into dataset.json."""
    return inspect.getdoc(inspect.getmodule(type(builder))) or ""


def _replace(work: Path, out: Path) -> None:
    """Move the finished folder into place; the previous one (if any) is removed only after the rename."""
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    if out.exists():
        out.rename(old)
    work.rename(out)
    shutil.rmtree(old, ignore_errors=True)
