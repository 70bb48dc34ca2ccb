"""The dataset of a training run as MLflow dataset inputs (the UI's Dataset column): one input per split.

Each split is logged as a dataset named `<dataset folder>-<split>` with source `data.root`, digest the run's
`data_version` (the content hash of the processed data, fusion.tracking.lineage) and the split as its context
(`mlflow.data.context`), so runs on the same data show the same digest and the table can be filtered by it."""

from __future__ import annotations

import warnings
from collections import Counter
from pathlib import Path
from typing import Iterable, Mapping

from mlflow.data.meta_dataset import MetaDataset
from mlflow.entities import DatasetInput, InputTag
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

from fusion.tasks import SPLITS


def dataset_source(root: str):
    """Where the dataset lives, as MLflow resolves it: a local folder as its absolute path, a URI (s3://, ...)
    as given."""
    from mlflow.data.dataset_source_registry import resolve_dataset_source

    with warnings.catch_warnings():  # MLflow registers two equivalent local sources and warns about the choice
        warnings.simplefilter("ignore", UserWarning)
        return resolve_dataset_source(root if "://" in root else str(Path(root).resolve()))


def dataset_inputs(root: str, digest: str, records: Iterable[Mapping], modalities: Iterable[str]) -> list[DatasetInput]:
    """One input per split that holds records: name, source, digest, context = the split, and the record count
    and modalities as input tags."""
    counts = Counter(record["split"] for record in records)
    source = dataset_source(str(root))
    name = Path(str(root).rstrip("/")).name or "dataset"
    inputs = []
    for split in SPLITS:
        if not counts[split]:
            continue
        dataset = MetaDataset(source, name=f"{name}-{split}", digest=digest)._to_mlflow_entity()
        tags = [
            InputTag(MLFLOW_DATASET_CONTEXT, split),
            InputTag("records", str(counts[split])),
            InputTag("modalities", "+".join(modalities)),
        ]
        inputs.append(DatasetInput(dataset, tags))
    return inputs


def log_datasets(
    client, run_id: str, root: str, digest: str, records: Iterable[Mapping], modalities: Iterable[str]
) -> None:
    """Log the run's dataset inputs (MLflow's log_input, through the run's client)."""
    client.log_inputs(run_id, datasets=dataset_inputs(root, digest, records, list(modalities)))
