"""Precomputed features as a modality's input: `.npy`/`.npz` arrays are validated (bad ones quarantined with their
reason), standardised and sharded; every fusion takes them through the FeatureEncoder; an AV-MNIST dataset written
by `python -m fusion.ingest avmnist` (PNG digits + spectrogram arrays) trains end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fusion.config import compose
from fusion.data.collate import MultimodalCollate
from fusion.data.shards import ModalityShards
from fusion.ingest.__main__ import main as ingest
from fusion.models.builder import build_model
from fusion.models.feature_encoder import FeatureEncoder
from fusion.models.fusions import FUSIONS
from fusion.preprocess.common import restored_processor, run_preprocess
from fusion.stages.train import train
from tests.helpers.config import tiny_config
from tests.helpers.models import TINY, fusion_cfg, model_cfg

DIM = 6


def _dataset(root: Path) -> Path:
    """Records whose text is given as feature arrays, valid and not, plus one raw image for the other modality."""
    rng = np.random.default_rng(0)
    (root / "feats").mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "pic.png")
    arrays = {f"ok{i}": rng.normal(3.0, 2.0, (4 + i, DIM)) for i in range(8)}
    arrays["vector"] = rng.normal(size=DIM).astype(np.float32)  # [F]: one step
    arrays["ints"] = np.arange(2 * DIM, dtype=np.int16).reshape(2, DIM)
    arrays["nan"] = np.full((3, DIM), np.nan)
    arrays["inf"] = np.array([[np.inf] * DIM])
    arrays["width"] = np.zeros((3, DIM + 1))
    arrays["cube"] = np.zeros((2, 2, DIM))
    arrays["words"] = np.array(["a", "b"])
    rows = []
    for name, array in arrays.items():
        np.save(root / "feats" / f"{name}.npy", array)
        rows.append(
            {"id": name, "label": "a" if len(rows) % 2 else "b", "split": "train", "text_path": f"feats/{name}.npy"}
        )
    np.savez(root / "feats" / "two.npz", features=np.ones((2, DIM)), other=np.zeros(1))
    np.savez(root / "feats" / "many.npz", x=np.ones((2, DIM)), y=np.zeros(1))
    np.save(root / "feats" / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    rows += [
        {"id": "two", "label": "a", "split": "val", "text_path": "feats/two.npz"},
        {"id": "many", "label": "a", "split": "val", "text_path": "feats/many.npz"},
        {"id": "objects", "label": "b", "split": "test", "text_path": "feats/objects.npy"},
        {"id": "inline", "label": "b", "split": "test", "text": "raw text in a features dataset"},
        {"id": "picture", "label": "a", "split": "test", "image": "pic.png"},
    ]
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return root


def test_feature_arrays_are_validated_standardised_and_sharded(tmp_path):
    root = _dataset(tmp_path / "data")
    cfg = compose(
        [
            f"data.root={root}",
            f"data.processed_dir={tmp_path / 'processed'}",
            "preprocess.num_workers=1",
            "data.dirs.text=.",
            "data.dirs.image=.",
        ]
    )
    summary = run_preprocess("text", cfg)
    folder = tmp_path / "processed" / "text"
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["kind"] == "features" and meta["feature_dim"] == DIM and meta["max_steps"] == 11  # ok7: 4 + 7
    reasons = {r["id"]: r["reason"] for r in map(json.loads, (folder / "rejected.jsonl").read_text().splitlines())}
    assert set(reasons) == {"nan", "inf", "width", "cube", "words", "many", "objects", "inline"}
    assert "NaN or Inf" in reasons["nan"] and "NaN or Inf" in reasons["inf"]
    assert f"the training records have {DIM}" in reasons["width"] and "[2, 2, 6]" in reasons["cube"]
    assert "numbers are required" in reasons["words"] and "pickled" in reasons["objects"]
    assert "holds 2 arrays" in reasons["many"] and "gives inline text" in reasons["inline"]
    assert summary["kept"] == {"train": 10, "val": 1, "test": 0}
    shards = ModalityShards(folder)
    item = shards.get("ok3")["features"]
    assert item.dtype == torch.float32 and item.shape == (7, DIM)
    assert abs(float(item.mean())) < 1.0  # standardised with the training split's statistics (mean 3, std 2)
    assert shards.get("vector")["features"].shape == (1, DIM)
    restored = restored_processor("text", cfg.preprocess.text, folder, root, ".")  # as a model bundle restores it
    assert torch.equal(restored.process(next(r for r in _records(root) if r.id == "ok3"))["features"], item)


def test_sequences_cut_to_max_steps_are_counted_and_warned_of(tmp_path, capsys):
    """meta.json's lengths count the training sequences of the common feature size against
    preprocess.features.max_steps, and the stage names that knob when it cuts some; sequences that fit raise
    nothing."""
    root = _dataset(tmp_path / "data")
    overrides = [f"data.root={root}", "preprocess.num_workers=1", "data.dirs.text=.", "data.dirs.image=."]
    steps = [4 + i for i in range(8)] + [1, 2, 3, 1]  # ok0-ok7, vector, ints, nan, inf (readable shape, 6 features)
    for max_steps, longer in ((8, 3), (512, 0)):
        out = tmp_path / f"processed-{max_steps}"
        run_preprocess(
            "text", compose([*overrides, f"data.processed_dir={out}", f"preprocess.features.max_steps={max_steps}"])
        )
        lengths = json.loads((out / "text" / "meta.json").read_text())["lengths"]
        assert lengths["probed"] == len(steps) and lengths["longest"] == max(steps)
        assert lengths["longer_than_max_steps"] == longer
        assert lengths["share_past_max_steps"] == round(sum(max(0, t - max_steps) for t in steps) / sum(steps), 4)
        warning = [line for line in capsys.readouterr().out.splitlines() if "warning" in line]
        assert len(warning) == (1 if longer else 0)
        assert not longer or (
            "3 of 12 training sequences" in warning[0] and "preprocess.features.max_steps" in warning[0]
        )


def _records(root: Path):
    from fusion.data.manifest import load_manifest

    return load_manifest(root, "manifest.jsonl", {"seed": 0, "train": 0.7, "val": 0.15, "test": 0.15}, "t").records


def _feature_batch(batch_size: int = 3) -> dict:
    """A collated batch: text as feature arrays (varying lengths, one sample without text), image and audio raw."""
    metas = {
        "text": {"kind": "features", "feature_dim": DIM, "max_steps": 5},
        "image": {"size": 32, "channels": 3},
        "audio": {"n_mels": 8, "max_frames": 10},
    }
    samples = [
        {
            "id": str(i),
            "label": i % 3,
            "text": None if i == 1 else {"features": torch.randn(2 + i, DIM)},
            "image": {"image": torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8)},
            "audio": {"mel": torch.randn(8, 4 + i)},
        }
        for i in range(batch_size)
    ]
    return metas, MultimodalCollate(metas)(samples)


@pytest.mark.parametrize("fusion", sorted(FUSIONS))
def test_every_fusion_trains_with_a_features_modality(fusion):
    torch.manual_seed(0)
    metas, batch = _feature_batch()
    model = build_model(model_cfg(), fusion_cfg(fusion), ["text", "image", "audio"], metas, num_classes=3)
    assert isinstance(model.encoders["text"], FeatureEncoder) and model.encoders["text"].dim == TINY["dim"]
    out = model({m: batch[m] for m in ("text", "image", "audio")})
    assert out.shape == (3, 3) and torch.isfinite(out).all()
    out.sum().backward()
    assert model.encoders["text"].proj.weight.grad.abs().sum() > 0


def _avmnist(root: Path, train_rows: int = 48, test_rows: int = 12) -> Path:
    """AV-MNIST's npy release in miniature: a bright bar whose position is the class, in the digit image and in the
    spectrogram, so the labels can be learnt at all."""
    rng = np.random.default_rng(0)
    (root / "image").mkdir(parents=True)
    (root / "audio").mkdir()
    for part, n in (("train", train_rows), ("test", test_rows)):
        labels = np.arange(n) % 3
        images = rng.uniform(0, 60, (n, 28, 28))
        spectrograms = rng.uniform(0, 60, (n, 112, 112))
        for i, label in enumerate(labels):
            images[i, 8 * label : 8 * label + 6] = 250
            spectrograms[i, :, 30 * label : 30 * label + 20] = 250
        np.save(root / "image" / f"{part}_data.npy", images.reshape(n, 784).astype(np.float32))
        np.save(root / "audio" / f"{part}_data.npy", spectrograms.astype(np.float32))
        np.save(root / f"{part}_labels.npy", labels)
    return root


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_ingested_avmnist_trains_end_to_end(tmp_path):
    dataset = _avmnist(tmp_path / "avmnist")
    summary = ingest(["avmnist", str(dataset)])
    assert summary["records"] == 60 and summary["unmapped"] == 0
    cfg = tiny_config(
        tmp_path, tmp_path / "processed", [f"data.root={dataset}", "modality=image+audio", "trainer.max_epochs=1"]
    )
    assert run_preprocess("image", cfg)["rejected"] == 0
    assert run_preprocess("audio", cfg)["rejected"] == 0
    meta = json.loads((tmp_path / "processed" / "audio" / "meta.json").read_text())
    assert (meta["kind"], meta["feature_dim"], meta["max_steps"]) == ("features", 112, 112)
    metrics = train(cfg)  # fit, test, the model bundle, the MLflow model and the attention figures
    assert 0.0 <= metrics["test/acc"] <= 1.0
    figures = {p.name for p in (tmp_path / "train" / "explain").rglob("*.png")}
    assert "audio_attention.png" in figures and "image_attention.png" in figures
