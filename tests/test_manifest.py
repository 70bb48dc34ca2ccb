"""The data contract: manifest parsing, rejections with reasons, seeded stratified splits, safe paths."""

import json
import os
from collections import Counter
from pathlib import Path

import pytest

from fusion.data.manifest import ManifestError, RecordError, load_manifest, resolve_file, stratified_splits

SPLIT = {"seed": 0, "train": 0.7, "val": 0.15, "test": 0.15}


def write_manifest(root: Path, rows: list) -> None:
    lines = [row if isinstance(row, str) else json.dumps(row) for row in rows]
    (root / "manifest.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")


def good(i: int, label: str = "a", **extra) -> dict:
    return {"id": f"r{i}", "label": label, "text": f"text {i}", **extra}


def test_valid_records_and_reasons_for_bad_lines(tmp_path):
    write_manifest(
        tmp_path,
        [
            good(1),
            good(2, "b"),
            "{not json",
            ["a", "list"],
            {"label": "a", "text": "no id"},
            {"id": "r3", "text": "no label"},
            good(1),  # duplicate id
            good(4, split="holdout"),
            {"id": "r5", "label": "a", "text": None, "image": None},
            {"id": "r6", "label": "a", "text": "x", "text_path": "text/x.txt"},
            {"id": "r7", "label": "a", "image": 3},
        ],
    )
    manifest = load_manifest(tmp_path, "manifest.jsonl", SPLIT, stage="test")
    assert [r.id for r in manifest.records] == ["r1", "r2"]
    reasons = {r.line: r.reason for r in manifest.rejections}
    assert "malformed JSON" in reasons[3]
    assert "expected a JSON object" in reasons[4]
    assert "'id'" in reasons[5]
    assert "'label'" in reasons[6]
    assert "duplicate id" in reasons[7] and "line 1" in reasons[7]
    assert "split 'holdout'" in reasons[8]
    assert "no modality" in reasons[9]
    assert "both 'text' and 'text_path'" in reasons[10]
    assert "must be a string" in reasons[11]
    assert all(r.stage == "test" for r in manifest.rejections)
    assert manifest.rejections[4].id == "r1"  # the duplicate keeps its id for tracing


def test_label_only_in_val_or_test_is_rejected(tmp_path):
    write_manifest(tmp_path, [good(1, split="train"), good(2, "zzz", split="test")])
    manifest = load_manifest(tmp_path, "manifest.jsonl", SPLIT, stage="test")
    assert manifest.classes == ["a"]
    assert "does not occur in the training split" in manifest.rejections[0].reason


def test_structural_errors_name_the_fix(tmp_path):
    with pytest.raises(ManifestError, match="data.root"):
        load_manifest(tmp_path, "manifest.jsonl", SPLIT, stage="test")
    write_manifest(tmp_path, ["{broken", "{also broken"])
    with pytest.raises(ManifestError, match="no usable record"):
        load_manifest(tmp_path, "manifest.jsonl", SPLIT, stage="test")


def test_stratified_split_is_seeded_proportional_and_order_independent(tmp_path):
    rows = [good(i, label=f"c{i % 4}") for i in range(400)]
    write_manifest(tmp_path, rows)
    first = load_manifest(tmp_path, "manifest.jsonl", SPLIT, stage="test")
    write_manifest(tmp_path, list(reversed(rows)))
    second = load_manifest(tmp_path, "manifest.jsonl", SPLIT, stage="test")
    assert {r.id: r.split for r in first.records} == {r.id: r.split for r in second.records}
    per_class = Counter((r.label, r.split) for r in first.records)
    for label in ("c0", "c1", "c2", "c3"):
        assert per_class[(label, "train")] == 70 and per_class[(label, "val")] == 15
    other_seed = stratified_splits(first.records, seed=1, fractions=SPLIT)
    assert other_seed != {r.id: r.split for r in first.records}


def test_explicit_split_is_kept(tmp_path):
    write_manifest(tmp_path, [good(i, split="test" if i == 0 else "train") for i in range(10)])
    manifest = load_manifest(tmp_path, "manifest.jsonl", SPLIT, stage="test")
    assert manifest.records[0].split == "test"


def test_a_manifest_without_validation_records_gets_them_from_training(tmp_path):
    rows = [good(i, label=f"c{i % 2}", split="test" if i < 20 else "train") for i in range(120)]
    write_manifest(tmp_path, rows)
    manifest = load_manifest(tmp_path, "manifest.jsonl", SPLIT, stage="test")
    splits = Counter((r.label, r.split) for r in manifest.records)
    # 50 training records a class, of which val / (train + val) = 0.15 / 0.85, rounded: 9
    assert splits[("c0", "val")] == splits[("c1", "val")] == 9 and splits[("c0", "train")] == 41
    assert manifest.carved_val == 18
    assert all(r.split == "test" for r in manifest.records if int(r.id[1:]) < 20)  # the test split is untouched
    again = load_manifest(tmp_path, "manifest.jsonl", SPLIT, stage="test")
    assert [r.split for r in again.records] == [r.split for r in manifest.records]  # seeded: every stage agrees
    write_manifest(tmp_path, [*rows, good(999, split="val")])
    assert load_manifest(tmp_path, "manifest.jsonl", SPLIT, stage="test").carved_val == 0  # a val split is kept
    write_manifest(tmp_path, rows)
    no_val = load_manifest(tmp_path, "manifest.jsonl", {**SPLIT, "val": 0.0}, stage="test")
    assert no_val.carved_val == 0 and not any(r.split == "val" for r in no_val.records)


def test_tiny_class_keeps_a_training_example():
    from fusion.data.manifest import Record

    records = [Record(id="only", label="rare", split="", line=1, text="x")]
    assert stratified_splits(records, seed=0, fractions=SPLIT) == {"only": "train"}


def test_resolve_file_keeps_paths_inside_the_dataset(tmp_path):
    root = tmp_path / "ds"
    (root / "image").mkdir(parents=True)
    (root / "image" / "ok.png").write_bytes(b"x")
    (root / "other.png").write_bytes(b"x")
    outside = tmp_path / "secret.png"
    outside.write_bytes(b"x")
    os.symlink(outside, root / "image" / "link.png")

    assert resolve_file(root, "image/ok.png", "image") == (root / "image" / "ok.png").resolve()
    assert resolve_file(root, "other.png", ".") == (root / "other.png").resolve()
    cases = {
        "../secret.png": "escapes",
        str(outside): "absolute",
        "image/link.png": "escapes",
        "other.png": "outside the modality's folder",
        "image/missing.png": "does not exist",
    }
    for path, reason in cases.items():
        with pytest.raises(RecordError, match=reason):
            resolve_file(root, path, "image")
