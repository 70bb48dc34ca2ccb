"""Which samples a run explains, found in the processed data by id."""

from __future__ import annotations

from typing import Sequence

from torch.utils.data import DataLoader

from fusion.data.datamodule import MultimodalDataModule
from fusion.tasks import SPLITS


class SampleNotFound(LookupError):
    """A requested record id is in no split of the processed data."""


def sample_item(datamodule: MultimodalDataModule, sample_id: str) -> dict:
    """The dataset item of ``sample_id`` from whichever split holds it."""
    for split in SPLITS:
        dataset = datamodule.dataset(split)
        for index, (record_id, _) in enumerate(dataset.records):
            if record_id == sample_id:
                return dataset[index]
    known = [r["id"] for r in datamodule.records[:3]]
    raise SampleNotFound(
        f"record {sample_id!r} is in no split of {datamodule.processed_dir} (ids look like "
        f"{', '.join(known)}); pick an id from its records.jsonl"
    )


def fixed_samples(
    datamodule: MultimodalDataModule, count: int, sample_ids: Sequence[str] = (), split: str = "test"
) -> list[dict]:
    """``sample_ids`` if given, else the first ``count`` ids (sorted) of ``split`` holding the most of the run's
    modalities: the same samples for every run on the same data, so runs can be compared figure by figure."""
    if sample_ids:
        return [sample_item(datamodule, i) for i in sample_ids]
    dataset = datamodule.dataset(split)
    order = sorted(range(len(dataset.records)), key=lambda i: dataset.records[i][0])
    held = {
        i: sum(shards.position.get(dataset.records[i][0]) is not None for shards in datamodule.shards.values())
        for i in order
    }
    most = max(held.values(), default=0)
    return [dataset[i] for i in order if held[i] == most][:count]


def split_loader(datamodule: MultimodalDataModule, split: str) -> DataLoader:
    """Every sample of a split in one process (no distributed sharding), in the datamodule's batches."""
    return DataLoader(
        datamodule.dataset(split),
        batch_size=datamodule.batch_size,
        shuffle=False,
        collate_fn=datamodule.collate,
        num_workers=0,
    )
