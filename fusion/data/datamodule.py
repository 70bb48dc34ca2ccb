"""Lightning DataModule joining the per-modality shards by record id, with missing modalities."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from fusion.data.collate import MultimodalCollate
from fusion.data.samplers import UnpaddedDistributedSampler, distributed_world
from fusion.data.shards import DataSetupError, ModalityShards
from fusion.tasks.labels import LabelSpec, label_spec

# The label keys of meta.json: every modality must have been preprocessed with the same ones.
LABEL_META = ("task", "classes", "target_stats")


class MultimodalDataset(Dataset):
    """Every valid record of one split; each selected modality's item or None where absent."""

    def __init__(self, split: str, records: list[dict], shards: dict[str, ModalityShards], labels: LabelSpec):
        self.split, self.shards = split, shards
        self.records = [(r["id"], labels.encode(r["label"])) for r in records if r["split"] == split]

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict:
        record_id, label = self.records[index]
        sample = {"id": record_id, "label": label}
        for modality, shards in self.shards.items():
            sample[modality] = shards.get(record_id)
        return sample


class MultimodalDataModule(pl.LightningDataModule):
    """Reads data.processed_dir/<modality>/ for the selected modalities; no raw file is decoded.

    `task` (task.name) must be the task the data was preprocessed for; `labels` encodes each
    record's label into its target and `num_outputs` is the size of the model's output.
    """

    def __init__(
        self,
        processed_dir: str | Path,
        modalities: Sequence[str],
        batch_size: int,
        num_workers: int = 0,
        pin_memory: bool | str = False,
        persistent_workers: bool = False,
        task: str = "multiclass",
        shuffle: bool = True,
        prefetch_factor: int | None = None,
        seed: int = 0,
        shards_url: str | None = None,
        cache_dir: str | None = None,
        memory_cache_mb: float = 0.0,
    ):
        super().__init__()
        self.processed_dir = Path(processed_dir)
        self.modalities = list(modalities)
        self.batch_size, self.num_workers, self.shuffle, self.seed = batch_size, num_workers, shuffle, seed
        self.pin_memory = torch.cuda.is_available() if pin_memory == "auto" else bool(pin_memory)
        self.persistent_workers, self.prefetch_factor = persistent_workers, prefetch_factor
        # The in-memory budget is per training process: each loader worker and modality holds its share.
        share_mb = memory_cache_mb / len(self.modalities) / max(1, num_workers)
        self.shards = {
            m: ModalityShards(self.processed_dir / m, shards_url, cache_dir, share_mb) for m in self.modalities
        }
        first = self.shards[self.modalities[0]]
        label_info = _label_meta(first.meta)
        for shards in self.shards.values():
            if _label_meta(shards.meta) != label_info:
                raise DataSetupError(
                    f"{shards.folder} and {first.folder} disagree on the task or labels; they were preprocessed "
                    f"from different manifests or tasks. Re-run `dvc repro` so every modality comes from the same "
                    f"data.root and task."
                )
        if label_info["task"] != task:
            raise DataSetupError(
                f"{first.folder} was preprocessed for task={label_info['task']}, not task={task}. Re-run the "
                f"preprocessing with task={task} (`dvc exp run -S task={task}`), or train with "
                f"task={label_info['task']}."
            )
        self.task = task
        self.labels: LabelSpec = label_spec(task)(label_info)
        self.classes: list[str] = self.labels.classes
        self.records = first.records()
        self.collate = MultimodalCollate(
            {m: s.meta for m, s in self.shards.items()}, label_dtype=getattr(torch, self.labels.dtype)
        )

    def check_every_modality_trains(self) -> None:
        """Refuse to train a modality that no training record holds: its encoder would never learn, and would
        answer at random whenever a served request brings that modality. The error names the modalities to train."""
        train_ids = [r["id"] for r in self.records if r["split"] == "train"]
        absent = [m for m in self.modalities if not any(i in self.shards[m].position for i in train_ids)]
        if not absent:
            return
        held = "+".join(m for m in self.modalities if m not in absent)
        folders = ", ".join(str(self.shards[m].folder) for m in absent)
        fix = (
            f"Train on the modalities the data holds: modality={held} (`python train.py modality={held}` or "
            f"`dvc exp run -S modality={held}`)."
            if held
            else "Check data.root and the manifest's splits (data.split)."
        )
        raise DataSetupError(
            f"no training record holds {' or '.join(absent)} ({folders} kept none in split train: the manifest gives "
            f"none there, or every one was rejected, see rejected.jsonl); an encoder that never trains would answer "
            f"at random when a request brings it. {fix}"
        )

    def check_validation_split(self) -> None:
        """Refuse to fit without validation records: early stopping and the best checkpoint watch a validation
        metric, and Lightning would fail after the first epoch with an error that names neither the data nor the
        fix. (A manifest that names only train and test gets its validation records from training; see
        fusion.data.manifest.carve_validation.)"""
        self._check_split_holds_records(
            "val",
            "data.split.val is 0, or every one was rejected",
            "early stopping and the best checkpoint need them",
            'give records "split": "val", or set data.split.val above 0 (a share of the training records then '
            "becomes the validation split), then rerun the preprocessing (`dvc repro`)",
        )

    def check_test_split(self) -> None:
        """Refuse to test without test records (checked before fitting, so no run trains for nothing): the test
        metrics, the report's figure and the explanations are computed on them."""
        self._check_split_holds_records(
            "test",
            "every one was rejected",
            "testing the trained model needs them",
            'give records "split": "test" (or leave "split" out of the manifest for a seeded split) and rerun the '
            "preprocessing (`dvc repro`), or train with test_after_fit=false",
        )

    def _check_split_holds_records(self, split: str, or_else: str, needed: str, fix: str) -> None:
        if len(self.dataset(split)) > 0:
            return
        raise DataSetupError(
            f"no {split} record in {self.processed_dir} (records.jsonl): the manifest gives none in split {split}, "
            f"or {or_else} (see rejected.jsonl); {needed}. Fix: {fix}."
        )

    def class_counts(self, split: str = "train") -> list[int]:
        """Records per class in `split` (single-label classification: each label encodes to a class index)."""
        counts = [0] * len(self.classes)
        for _, label in self.dataset(split).records:
            counts[int(label)] += 1
        return counts

    @property
    def num_outputs(self) -> int:
        """Size of the model's output: the number of classes, or 1 for regression."""
        return self.labels.num_outputs

    @property
    def metas(self) -> dict[str, dict]:
        return {m: s.meta for m, s in self.shards.items()}

    def dataset(self, split: str) -> MultimodalDataset:
        return MultimodalDataset(split, self.records, self.shards, self.labels)

    def loader(self, split: str, shuffle: bool = False, collate: Callable | None = None) -> DataLoader:
        """A DataLoader of one split; `collate` replaces the default one (e.g. an ablation wrapper).

        Under distributed training the training split is sharded by a DistributedSampler (shuffled with
        `seed` each epoch when `shuffle`, else in order: rank r of w takes samples r, r+w, ...; ranks are evened
        out for gradient sync) and an evaluation split gives each rank every w-th sample, each sample once.
        """
        dataset = self.dataset(split)
        sampler = None
        if distributed_world() > 1:
            sampler = (
                DistributedSampler(dataset, shuffle=shuffle, seed=self.seed)
                if split == "train"
                else UnpaddedDistributedSampler(dataset)
            )
            shuffle = False  # the sampler orders the samples
        workers = self.num_workers > 0
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            sampler=sampler,
            collate_fn=collate or self.collate,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers and workers,
            prefetch_factor=self.prefetch_factor if workers else None,
        )

    def train_dataloader(self) -> DataLoader:
        return self.loader("train", shuffle=self.shuffle)

    def val_dataloader(self) -> DataLoader:
        return self.loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self.loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()


def _label_meta(meta: dict) -> dict:
    """The label part of a modality's meta.json (data preprocessed before tasks existed is multiclass)."""
    return {"task": "multiclass", **{key: meta[key] for key in LABEL_META if key in meta}}
