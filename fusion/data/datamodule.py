"""Lightning DataModule joining the per-modality shards by record id, with missing modalities."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pytorch_lightning as pl
from torch.utils.data import DataLoader, Dataset

from fusion.data.collate import MultimodalCollate
from fusion.data.shards import ModalityShards


class MultimodalDataset(Dataset):
    """Every valid record of one split; each selected modality's item or None where absent."""

    def __init__(self, split: str, records: list[dict], shards: dict[str, ModalityShards], label_index: dict[str, int]):
        self.split, self.shards = split, shards
        self.records = [(r["id"], label_index[r["label"]]) for r in records if r["split"] == split]

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict:
        record_id, label = self.records[index]
        sample = {"id": record_id, "label": label}
        for modality, shards in self.shards.items():
            sample[modality] = shards.get(record_id)
        return sample


class MultimodalDataModule(pl.LightningDataModule):
    """Reads data.processed_dir/<modality>/ for the selected modalities; no raw file is decoded."""

    def __init__(self, processed_dir: str | Path, modalities: Sequence[str], batch_size: int,
                 num_workers: int = 0, pin_memory: bool = False, persistent_workers: bool = False):
        super().__init__()
        self.processed_dir = Path(processed_dir)
        self.modalities = list(modalities)
        self.batch_size, self.num_workers = batch_size, num_workers
        self.pin_memory, self.persistent_workers = pin_memory, persistent_workers
        self.shards = {m: ModalityShards(self.processed_dir / m) for m in self.modalities}
        first = self.shards[self.modalities[0]]
        self.classes: list[str] = first.meta["classes"]
        for modality, shards in self.shards.items():
            if shards.meta["classes"] != self.classes:
                raise ValueError(
                    f"{shards.folder} and {first.folder} disagree on the classes; they were preprocessed from "
                    f"different manifests. Re-run `dvc repro` so every modality comes from the same data.root."
                )
        self.records = first.records()
        self.label_index = {name: i for i, name in enumerate(self.classes)}
        self.collate = MultimodalCollate({m: s.meta for m, s in self.shards.items()})

    @property
    def metas(self) -> dict[str, dict]:
        return {m: s.meta for m, s in self.shards.items()}

    def dataset(self, split: str) -> MultimodalDataset:
        return MultimodalDataset(split, self.records, self.shards, self.label_index)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        return DataLoader(
            self.dataset(split), batch_size=self.batch_size, shuffle=shuffle, collate_fn=self.collate,
            num_workers=self.num_workers, pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers and self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()
