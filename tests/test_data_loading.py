"""Collation with missing modalities and the DataModule joining shards by record id."""

import json
import pickle
import shutil
import subprocess
import sys

import pytest
import torch

from fusion.config import compose
from fusion.data.collate import MultimodalCollate
from fusion.data.datamodule import MultimodalDataModule
from fusion.data.shards import DataSetupError, ModalityShards, item_nbytes, read_jsonl
from fusion.preprocess.common import run_preprocess
from fusion.stages.evaluate import evaluate
from fusion.stages.train import train
from tests.helpers.config import ROOT, tiny_config

METAS = {"text": {}, "image": {"size": 4, "channels": 3}, "audio": {"n_mels": 2}}


def test_collate_pads_masks_and_zero_fills_missing():
    samples = [
        {
            "id": "a",
            "label": 1,
            "text": {"tokens": torch.tensor([5, 6, 7], dtype=torch.int32)},
            "image": {"image": torch.full((3, 4, 4), 9, dtype=torch.uint8)},
            "audio": None,
        },
        {"id": "b", "label": 0, "text": None, "image": None, "audio": {"mel": torch.ones(2, 5, dtype=torch.float16)}},
    ]
    batch = MultimodalCollate(METAS)(samples)
    assert batch["id"] == ["a", "b"] and batch["label"].tolist() == [1, 0]
    assert batch["text"]["tokens"].tolist() == [[5, 6, 7], [0, 0, 0]]
    assert batch["text"]["mask"].tolist() == [[True] * 3, [False] * 3]
    assert batch["text"]["present"].tolist() == [True, False]
    assert batch["image"]["image"].shape == (2, 3, 4, 4) and int(batch["image"]["image"][1].sum()) == 0
    assert batch["audio"]["mel"].shape == (2, 2, 5) and batch["audio"]["mel"].dtype == torch.float32
    assert batch["audio"]["mask"].tolist() == [[False] * 5, [True] * 5]
    assert batch["audio"]["present"].tolist() == [False, True]


def test_training_refuses_a_modality_no_training_record_holds(sample_root, tmp_path, subprocess_env):
    """A manifest without audio, trained as text+audio: refused (by the datamodule's check, and by the train stage
    before it logs or fits), naming the folder and the modality option that fits the data; the text alone passes."""
    root = tmp_path / "ds"
    shutil.copytree(sample_root, root)
    manifest = root / "manifest.jsonl"
    rows = [{k: v for k, v in json.loads(line).items() if k != "audio"} for line in manifest.read_text().splitlines()]
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    cfg = compose([f"data.root={root}", f"data.processed_dir={tmp_path / 'processed'}", "preprocess.num_workers=1"])
    for modality in ("text", "audio"):
        run_preprocess(modality, cfg)

    both = MultimodalDataModule(tmp_path / "processed", ["text", "audio"], batch_size=4)
    with pytest.raises(ValueError, match=r"no training record holds audio \(.*processed/audio kept none") as error:
        both.check_every_modality_trains()
    assert "modality=text (`python train.py modality=text`" in str(error.value)
    with pytest.raises(ValueError, match="Check data.root"):
        MultimodalDataModule(tmp_path / "processed", ["audio"], batch_size=4).check_every_modality_trains()
    MultimodalDataModule(tmp_path / "processed", ["text"], batch_size=4).check_every_modality_trains()
    with pytest.raises(DataSetupError, match="no training record holds audio"):  # checked before fitting
        train(tiny_config(tmp_path, tmp_path / "processed", [f"data.root={root}", "modality=text+audio"]))
    assert not (tmp_path / "mlflow.db").exists()  # refused before any run was logged
    # the CLI prints the message and the fix, without a traceback
    cli = subprocess.run(
        [
            sys.executable,
            "train.py",
            f"data.root={root}",
            f"data.processed_dir={tmp_path / 'processed'}",
            "modality=text+audio",
            f"logger.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        cwd=ROOT,
        env=subprocess_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert cli.returncode != 0 and "error: no training record holds audio" in cli.stderr, cli.stderr[-2000:]
    assert "Traceback" not in cli.stderr and "modality=text" in cli.stderr


def test_collate_when_no_sample_has_the_modality():
    batch = MultimodalCollate({"audio": {"n_mels": 2}})([{"id": "a", "label": 0, "audio": None}])
    assert batch["audio"]["mask"].shape == (1, 1) and not batch["audio"]["present"].any()


def _sample_split_in_two(sample_root, tmp_path, other: str) -> tuple:
    """A copy of the sample whose manifest puts every fifth record in split `other` and the rest in train."""
    root = tmp_path / "ds"
    shutil.copytree(sample_root, root)
    manifest = root / "manifest.jsonl"
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    for i, row in enumerate(rows):
        row["split"] = other if i % 5 == 0 else "train"
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return root, rows


def test_a_manifest_without_validation_records_trains_or_is_refused_naming_the_fix(sample_root, tmp_path, capsys):
    """Only train and test in the manifest: the stages set a seeded share of the training records aside for
    validation and say so; with data.split.val=0 there is none, and training refuses before it logs or fits."""
    root, rows = _sample_split_in_two(sample_root, tmp_path, "test")
    for val, folder in ((0.15, "carved"), (0.0, "none")):
        cfg = compose(
            [f"data.root={root}", f"data.processed_dir={tmp_path / folder}", "preprocess.num_workers=1"]
            + [f"data.split.val={val}"]
        )
        run_preprocess("text", cfg)
    assert "training records became the validation split" in capsys.readouterr().out
    carved = MultimodalDataModule(tmp_path / "carved", ["text"], batch_size=4)
    carved.check_validation_split()
    assert 0 < len(carved.dataset("val")) < len(carved.dataset("train"))
    assert len(carved.dataset("test")) == len(rows[::5])  # the test split is the manifest's
    with pytest.raises(ValueError, match=r"no val record in .*none.*data.split.val above 0"):
        MultimodalDataModule(tmp_path / "none", ["text"], batch_size=4).check_validation_split()
    overrides = [f"data.root={root}", "modality=text", "data.split.val=0.0"]
    with pytest.raises(ValueError, match="no val record"):  # the train stage checks before fitting
        train(tiny_config(tmp_path, tmp_path / "none", overrides))
    assert not (tmp_path / "mlflow.db").exists()


def test_testing_without_test_records_is_refused_before_fitting(sample_root, tmp_path):
    """Only train and val in the manifest: training with test_after_fit (the default) and the evaluate stage refuse
    before fitting or loading anything, naming the fix; without testing it trains."""
    root, _ = _sample_split_in_two(sample_root, tmp_path, "val")
    processed = tmp_path / "processed"
    run_preprocess(
        "text", compose([f"data.root={root}", f"data.processed_dir={processed}", "preprocess.num_workers=1"])
    )
    with pytest.raises(ValueError, match=r"no test record in .*test_after_fit=false"):
        MultimodalDataModule(processed, ["text"], batch_size=4).check_test_split()
    overrides = [f"data.root={root}", "modality=text"]
    with pytest.raises(ValueError, match="no test record"):
        train(tiny_config(tmp_path, processed, overrides))
    assert not (tmp_path / "mlflow.db").exists()
    metrics = train(tiny_config(tmp_path, processed, [*overrides, "test_after_fit=false"]))
    assert "val/acc" in metrics and not any(k.startswith("test/") for k in metrics)
    with pytest.raises(ValueError, match="no test record"):  # the DVC evaluate stage of that run
        evaluate(tiny_config(tmp_path, processed, overrides))


def test_datamodule_joins_modalities_by_id(processed_dir, sample_root):
    dm = MultimodalDataModule(processed_dir, ["text", "image", "audio"], batch_size=8)
    manifest = {r["id"]: r for r in read_jsonl(sample_root / "manifest.jsonl")}
    assert dm.classes == sorted({r["label"] for r in manifest.values()})
    sizes = {split: len(dm.dataset(split)) for split in ("train", "val", "test")}
    assert sum(sizes.values()) == len(manifest) and min(sizes.values()) > 0
    batch = next(iter(dm.val_dataloader()))
    for i, record_id in enumerate(batch["id"]):
        row = manifest[record_id]
        assert dm.classes[batch["label"][i]] == row["label"]
        assert bool(batch["image"]["present"][i]) == (row.get("image") is not None)
        assert bool(batch["audio"]["present"][i]) == (row.get("audio") is not None)
        assert bool(batch["text"]["present"][i]) == (row.get("text") is not None or row.get("text_path") is not None)


def test_datamodule_with_workers_and_one_modality(processed_dir):
    dm = MultimodalDataModule(processed_dir, ["audio"], batch_size=16, num_workers=2, persistent_workers=True)
    batches = list(dm.train_dataloader())
    assert sum(len(b["id"]) for b in batches) == len(dm.dataset("train"))
    assert set(batches[0]) == {"id", "label", "audio"}


def test_decoded_items_stay_in_memory_up_to_the_budget(processed_dir):
    """With memory_cache_mb the first items read are kept (the same objects come back, equal to a fresh decode);
    an item that would pass the budget is decoded on every read; a pickled copy (a loader worker) starts empty."""
    folder = processed_dir / "audio"
    ids = json.loads((folder / "ids.json").read_text(encoding="utf-8"))
    plain = ModalityShards(folder)
    assert plain.get(ids[0]) is not plain.get(ids[0])  # no cache: every read decodes
    cached = ModalityShards(folder, memory_cache_mb=64)
    first = cached.get(ids[0])
    assert cached.get(ids[0]) is first
    assert torch.equal(first["mel"], plain.get(ids[0])["mel"])
    size = item_nbytes(first)
    assert size >= first["mel"].numel() * first["mel"].element_size() > 0
    tight = ModalityShards(folder, memory_cache_mb=1.5 * size / 2**20)  # room for one item of this size
    kept = tight.get(ids[0])
    second = tight.get(ids[1])
    assert tight.get(ids[0]) is kept and tight.get(ids[1]) is not second
    assert pickle.loads(pickle.dumps(cached))._items == {}
    dm = MultimodalDataModule(processed_dir, ["text", "audio"], batch_size=8, memory_cache_mb=2)
    assert {m: s.memory_cache_bytes for m, s in dm.shards.items()} == {"text": 2**20, "audio": 2**20}
    workers = MultimodalDataModule(processed_dir, ["text", "audio"], batch_size=8, num_workers=2, memory_cache_mb=2)
    assert {s.memory_cache_bytes for s in workers.shards.values()} == {2**19}  # each worker holds its share


def test_missing_processed_folder_names_the_stage(tmp_path):
    import pytest

    with pytest.raises(FileNotFoundError, match="dvc repro preprocess_audio"):
        MultimodalDataModule(tmp_path, ["audio"], batch_size=4)


def test_shards_streamed_from_a_remote_url_load_the_same_batches(processed_dir, tmp_path):
    """data.shards_url: chunks streamed by litdata from <url>/<modality>/shards into a cache (a `local:` URL
    stands in for s3://; the same downloader-with-cache path), small files from processed_dir."""
    remote, small = tmp_path / "bucket", tmp_path / "processed"
    for modality in ("text", "image", "audio"):
        shutil.copytree(processed_dir / modality / "shards", remote / modality / "shards")
        shutil.copytree(processed_dir / modality, small / modality, ignore=shutil.ignore_patterns("shards"))
    modalities = ["text", "image", "audio"]
    local = MultimodalDataModule(processed_dir, modalities, batch_size=8)
    streamed = MultimodalDataModule(
        small, modalities, batch_size=8, shards_url=f"local:{remote}", cache_dir=str(tmp_path / "cache")
    )
    for expected, got in zip(local.val_dataloader(), streamed.val_dataloader(), strict=True):
        assert got["id"] == expected["id"]
        for modality in modalities:
            for key, value in expected[modality].items():
                assert torch.equal(got[modality][key], value), (modality, key)
    assert list((tmp_path / "cache").rglob("chunk-*.bin"))  # fetched into the cache, not read in place


def test_shards_and_small_files_from_different_runs_are_refused(processed_dir, tmp_path):
    shutil.copytree(processed_dir / "text", tmp_path / "text", ignore=shutil.ignore_patterns("shards"))
    shutil.copytree(processed_dir / "image" / "shards", tmp_path / "bucket" / "text" / "shards")
    shards = ModalityShards(tmp_path / "text", shards_url=str(tmp_path / "bucket"))
    with pytest.raises(ValueError, match="different preprocessing runs"):
        shards.get(next(iter(shards.position)))
