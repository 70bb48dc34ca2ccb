"""`python -m fusion.ingest`: every format on a tiny fixture written in its published layout gives a manifest the
pipeline accepts, and reports (never fails on) the rows it cannot map. One of them (AV-MNIST) is trained end to
end in tests/test_features.py."""

import csv
import io
import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from fusion.data.manifest import load_manifest
from fusion.ingest.__main__ import main
from fusion.ingest.writer import MANIFEST, REJECTED
from tests.helpers.config import ROOT

SPLIT_CFG = {"seed": 0, "train": 0.7, "val": 0.15, "test": 0.15}


def _png(path: Path, value: int = 128) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(path)
    return path.name


def _wav(path: Path, seconds: float = 0.1, rate: int = 16000) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.sin(np.arange(int(seconds * rate)) / 5.0).astype(np.float32) * 0.3, rate)


def _jsonl(path: Path, rows: list) -> None:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")


def _ingest(argv: list[str], task: str = "multiclass") -> tuple[dict, list[dict], list[dict]]:
    """Run the CLI in-process; the manifest must load as the stages load it (no line rejected by them)."""
    summary = main(argv)
    root = Path(summary["manifest"]).parent
    manifest = load_manifest(root, MANIFEST, SPLIT_CFG, stage="test", task=task)
    assert not manifest.rejections, manifest.rejections
    records = [json.loads(line) for line in (root / MANIFEST).read_text(encoding="utf-8").splitlines()]
    unmapped = [json.loads(line) for line in (root / REJECTED).read_text(encoding="utf-8").splitlines()]
    return summary, records, unmapped


def _reasons(unmapped: list[dict]) -> str:
    return " | ".join(u["reason"] for u in unmapped)


def test_table_csv_maps_columns_and_reports_bad_rows(tmp_path, capsys):
    _png(tmp_path / "img" / "a.png")
    _png(tmp_path / "img" / "b.png")
    table = tmp_path / "captions.csv"
    with table.open("w", newline="", encoding="utf-8") as stream:
        out = csv.writer(stream)
        out.writerows(
            [
                ["key", "caption", "class", "file", "fold"],
                ["a", "a dog", "dog", "img/a.png", "train"],
                ["b", "", "dog", "img/b.png", "dev"],
                ["c", "a dog", "dog", "", "test"],
                ["d", "lost", "cat", "img/missing.png", "train"],
                ["e", "no class", "", "", "train"],
                ["f", "too", "many", "fields", "train", "extra"],
                ["a", "again", "dog", "", "train"],
            ]
        )
    _, records, unmapped = _ingest(
        ["table", str(table), "id=key", "label=class", "text=caption", "image=file", "split=fold"]
    )
    assert [r["id"] for r in records] == ["a", "b", "c"]
    assert records[1] == {"id": "b", "label": "dog", "split": "val", "image": "img/b.png"}  # empty cell: missing
    assert {u["id"] for u in unmapped} == {"d", "e", None, "a"}
    reasons = _reasons(unmapped)
    assert "does not exist" in reasons and "label" in reasons and "header's 5 fields" in reasons
    assert "duplicate id" in reasons
    assert "could not map 4 row(s)" in capsys.readouterr().out


def test_table_tsv_multilabel_and_jsonl_regression(tmp_path):
    _wav(tmp_path / "clips" / "1.wav")
    (tmp_path / "t.tsv").write_text("key\ttags\tclip\n1\tjazz;live\tclips/1.wav\n2\tpop\t\n", encoding="utf-8")
    _, records, _ = _ingest(
        [
            "table",
            str(tmp_path / "t.tsv"),
            "--task",
            "multilabel",
            "--label-sep",
            ";",
            "id=key",
            "label=tags",
            "audio=clip",
            "text=tags",
        ],
        task="multilabel",
    )
    assert records[0]["label"] == ["jazz", "live"] and records[0]["audio"] == "clips/1.wav"
    _jsonl(tmp_path / "s.jsonl", [{"k": 1, "score": 1.5, "t": "good"}, {"k": 2, "score": "high", "t": "x"}, "{oops"])
    _, records, unmapped = _ingest(
        [
            "table",
            str(tmp_path / "s.jsonl"),
            "--task",
            "regression",
            "id=k",
            "label=score",
            "text=t",
            "--output",
            str(tmp_path),
        ],
        task="regression",
    )
    assert records == [{"id": "1", "label": 1.5, "text": "good"}]
    assert "must be a number" in _reasons(unmapped) and "malformed JSON" in _reasons(unmapped)


def test_table_mapping_errors_stop_with_the_fix(tmp_path, capsys):
    (tmp_path / "t.csv").write_text("a,b\n1,2\n", encoding="utf-8")
    with pytest.raises(SystemExit, match="column\\(s\\) label_col not in"):
        main(["table", str(tmp_path / "t.csv"), "label=label_col"])
    with pytest.raises(SystemExit, match="needs label="):
        main(["table", str(tmp_path / "t.csv"), "text=a"])


def test_class_folders_pair_files_by_name(tmp_path):
    root = tmp_path / "pets"
    _png(root / "dog" / "001.png")
    _wav(root / "dog" / "001.wav")
    (root / "dog" / "001.txt").write_text("woof", encoding="utf-8")
    _png(root / "cat" / "sub" / "002.jpg")
    _wav(root / "cat" / "003.flac")
    _png(root / "cat" / "004.png")
    _png(root / "cat" / "004.jpeg")
    (root / "README.md").write_text("about", encoding="utf-8")
    (root / "cat" / "notes.xyz").write_text("?", encoding="utf-8")
    _, records, unmapped = _ingest(["folders", str(root)])
    by_id = {r["id"]: r for r in records}
    assert by_id["dog/001"] == {
        "id": "dog/001",
        "label": "dog",
        "text_path": "dog/001.txt",
        "image": "dog/001.png",
        "audio": "dog/001.wav",
    }
    assert set(by_id) == {"dog/001", "cat/sub/002", "cat/003"}
    reasons = _reasons(unmapped)
    assert "not inside a class folder" in reasons and "'.xyz'" in reasons and "2 image files share the name" in reasons


def test_class_folders_under_split_folders(tmp_path):
    root = tmp_path / "pets"
    for split, label in (("train", "dog"), ("train", "cat"), ("validation", "dog"), ("test", "cat")):
        _png(root / split / label / f"{split}.png")
    _, records, _ = _ingest(["folders", str(root)])
    assert {(r["split"], r["label"]) for r in records} == {
        ("train", "dog"),
        ("train", "cat"),
        ("val", "dog"),
        ("test", "cat"),
    }


def test_hugging_face_saved_dataset(tmp_path):
    datasets = pytest.importorskip("datasets")
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((6, 6, 3), np.uint8)).save(buffer, format="PNG")
    features = datasets.Features(
        {
            "sentence": datasets.Value("string"),
            "label": datasets.ClassLabel(names=["neg", "pos"]),
            "photo": datasets.Image(),
        }
    )
    rows = {
        "sentence": ["fine", "bad", "unlabelled"],
        "label": [1, 0, -1],
        "photo": [{"bytes": buffer.getvalue(), "path": None}, None, None],
    }
    saved = tmp_path / "saved"
    datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict(rows, features=features),
            "validation": datasets.Dataset.from_dict(rows, features=features),
        }
    ).save_to_disk(str(saved))
    out = tmp_path / "out"
    summary, records, unmapped = _ingest(["hf", str(saved), "--output", str(out)])
    assert summary["task"] == "multiclass" and summary["splits"]["val"] == 2
    first = records[0]
    assert first["label"] == "pos" and first["text"] == "fine" and first["image"].endswith(".png")
    assert (out / first["image"]).is_file()
    assert len(unmapped) == 2 and "label" in _reasons(unmapped)  # ClassLabel -1: no label


def _mmimdb(root: Path) -> None:
    data = root / "dataset"
    data.mkdir(parents=True)
    movies = {
        "0001": {"genres": ["Drama", "Comedy"], "plot": ["A plot.", "More."]},
        "0002": {"genres": ["Drama"], "plot": ["Another."]},
        "0003": {"genres": [], "plot": ["x"]},
        "0004": {"genres": ["Comedy"], "plot": ["No poster."]},
    }
    for movie, meta in movies.items():
        (data / f"{movie}.json").write_text(json.dumps(meta), encoding="utf-8")
    (data / "0005.json").write_text("{broken", encoding="utf-8")
    for movie in ("0001", "0002", "0003"):
        _png(data / f"{movie}.jpeg")
    (root / "split.json").write_text(
        json.dumps({"train": ["0001", "0003", "0005"], "dev": ["0002"], "test": ["0004"]}), encoding="utf-8"
    )


def test_mmimdb(tmp_path):
    _mmimdb(tmp_path / "mmimdb")
    summary, records, unmapped = _ingest(["mmimdb", str(tmp_path / "mmimdb")], task="multilabel")
    assert summary["task"] == "multilabel"
    by_id = {r["id"]: r for r in records}
    assert by_id["0001"] == {
        "id": "0001",
        "label": ["Drama", "Comedy"],
        "split": "train",
        "text": "A plot. More.",
        "image": "dataset/0001.jpeg",
    }
    assert by_id["0002"]["split"] == "val" and "image" not in by_id["0004"]  # no poster: image missing
    assert {u["id"] for u in unmapped} == {"0003", "0005"}


def test_hateful_memes(tmp_path):
    root = tmp_path / "hm"
    for meme in ("42953", "23058", "13894", "37405"):
        _png(root / "img" / f"{meme}.png")
    _jsonl(
        root / "train.jsonl",
        [
            {"id": 42953, "img": "img/42953.png", "label": 0, "text": "its their character"},
            {"id": 23058, "img": "img/23058.png", "label": 1, "text": "don't be afraid"},
            "{not json",
            {"id": 11111, "img": "img/11111.png", "label": 1, "text": "gone"},
        ],
    )
    _jsonl(root / "dev_seen.jsonl", [{"id": 13894, "img": "img/13894.png", "label": 2, "text": "odd label"}])
    _jsonl(root / "dev_unseen.jsonl", [{"id": 13894, "img": "img/13894.png", "label": 1, "text": "unseen"}])
    _jsonl(root / "test.jsonl", [{"id": 37405, "img": "img/37405.png", "text": "no label in phase 1"}])
    _, records, unmapped = _ingest(["hateful_memes", str(root)])
    assert records[0] == {
        "id": "42953",
        "label": "not_hateful",
        "split": "train",
        "text": "its their character",
        "image": "img/42953.png",
    }
    assert [r["label"] for r in records] == ["not_hateful", "hateful"]
    reasons = _reasons(unmapped)
    assert len(unmapped) == 4 and "malformed JSON" in reasons and "does not exist" in reasons
    assert "is not 0 or 1" in reasons and "no label" in reasons
    _, records, _ = _ingest(["hateful_memes", str(root), "--phase", "unseen"])
    assert ("13894", "val") in {(r["id"], r["split"]) for r in records}


def test_avmnist_npy_release(tmp_path):
    root = tmp_path / "avmnist"
    (root / "image").mkdir(parents=True)
    (root / "audio").mkdir()
    rng = np.random.default_rng(0)
    for part, n in (("train", 12), ("test", 3)):
        images = rng.uniform(0, 255, (n, 784)).astype(np.float32)
        audio = rng.uniform(0, 255, (n, 112, 112)).astype(np.float32)
        if part == "train":
            images[10, 5] = np.nan
        np.save(root / "image" / f"{part}_data.npy", images)
        np.save(root / "audio" / f"{part}_data.npy", audio)
        np.save(root / f"{part}_labels.npy", np.arange(n) % 10)
    summary, records, unmapped = _ingest(["avmnist", str(root)])
    assert summary["splits"] == {"train": 10, "val": 1, "test": 3, "unsplit": 0}  # 1/12 of 12 train rows: val
    first = records[0]
    assert first["label"] == "0" and first["image"] == "images/train/train00000.png"
    assert np.load(root / first["audio"]).shape == (112, 112)
    assert Image.open(root / first["image"]).size == (28, 28)
    assert [u["id"] for u in unmapped] == ["train00010"] and "non-finite" in unmapped[0]["reason"]


def test_cmu_mosi_raw_release(tmp_path):
    root = tmp_path / "CMU_MOSI_Raw"
    (root / "Labels").mkdir(parents=True)
    (root / "Labels" / "OpinionLevelSentiment.csv").write_text(
        "1.2,4.5,03bSnISJMiM,1,2.4\n4.5,8.0,03bSnISJMiM,2,-1.8\n0.1,2.0,0h-zjBukYpk,1,strong\n0.1,2.0,zzz,9,0.5\n",
        encoding="utf-8",
    )
    transcripts = root / "Transcript" / "Segmented"
    transcripts.mkdir(parents=True)
    (transcripts / "03bSnISJMiM.annotprocessed").write_text("1_DELIM_ANYHOW IT WAS REALLY GOOD\n2_DELIM_BUT NO\n")
    _wav(root / "Audio" / "WAV_16000" / "Segmented" / "03bSnISJMiM_1.wav")
    (tmp_path / "folds.json").write_text(json.dumps({"train": ["03bSnISJMiM"], "valid": [], "test": []}))
    summary, records, unmapped = _ingest(
        ["mosi", str(root), "--folds", str(tmp_path / "folds.json")], task="regression"
    )
    assert summary["task"] == "regression"
    assert records[0] == {
        "id": "03bSnISJMiM_1",
        "label": 2.4,
        "split": "train",
        "text": "ANYHOW IT WAS REALLY GOOD",
        "audio": "Audio/WAV_16000/Segmented/03bSnISJMiM_1.wav",
    }
    assert records[1] == {"id": "03bSnISJMiM_2", "label": -1.8, "split": "train", "text": "BUT NO"}
    assert "is not a number" in _reasons(unmapped) and "neither a transcript" in _reasons(unmapped)


def _aligned(n: int, prefix: str, steps: int = 5) -> dict:
    rng = np.random.default_rng(1)
    part = {
        key: rng.normal(size=(n, steps, dim)).astype(np.float32)
        for key, dim in (("text", 4), ("audio", 3), ("vision", 2))
    }
    part["text"][:, :2] = 0.0  # left padding
    return {**part, "labels": rng.uniform(-3, 3, (n, 1, 1)), "id": np.array([f"{prefix}{i}" for i in range(n)])}


@pytest.mark.parametrize("fmt", ["mosi", "mosei"])
def test_cmu_aligned_pickle(fmt, tmp_path):
    data = {"train": _aligned(4, "a"), "valid": _aligned(2, "b"), "test": _aligned(2, "c")}
    data["test"]["id"] = np.array([["v", "1"], ["v", "2"]])
    data["train"]["labels"] = np.zeros((4, 2, 1))
    data["train"]["labels"][0] = 0.5
    data["train"]["labels"] = data["train"]["labels"][:, :1] if fmt == "mosi" else data["train"]["labels"]
    path = tmp_path / f"{fmt}_data.pkl"
    path.write_bytes(pickle.dumps(data, protocol=4))
    summary, records, unmapped = _ingest([fmt, str(path)], task="regression")
    out = tmp_path / f"{fmt}_data"
    assert summary["manifest"] == str(out / MANIFEST)
    assert {r["split"] for r in records} == ({"train", "val", "test"} if fmt == "mosi" else {"val", "test"})
    test_ids = [r["id"] for r in records if r["split"] == "test"]
    assert test_ids == ["v_1", "v_2"]
    first = records[0]
    assert np.load(out / first["text_path"]).shape == (3, 4)  # the two padding rows removed
    assert np.load(out / first["image"]).shape == (5, 2)
    if fmt == "mosei":
        assert len(unmapped) == 4 and "expected one sentiment score" in unmapped[0]["reason"]


def test_a_pickle_with_code_is_refused(tmp_path):
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"train": {"labels": np.zeros(1), "x": print}}))
    with pytest.raises(SystemExit, match="refusing to unpickle builtins.print"):
        main(["mosi", str(path)])


def test_help_lists_every_format_and_each_layout(subprocess_env):
    out = subprocess.run(
        [sys.executable, "-m", "fusion.ingest", "--help"],
        cwd=ROOT,
        env=subprocess_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    for name in ("table", "folders", "hf", "mmimdb", "hateful_memes", "avmnist", "mosi", "mosei"):
        assert name in out
    layout = subprocess.run(
        [sys.executable, "-m", "fusion.ingest", "hateful_memes", "--help"],
        cwd=ROOT,
        env=subprocess_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert "img/<id>.png" in layout and "--phase" in layout
