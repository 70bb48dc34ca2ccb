"""`python -m fusion.predict model=<run id | runs:/... | folder> manifest=<manifest.jsonl>`: predictions for a
whole manifest with a logged model, through the preprocessing code of training (the run's fitted processors),
batched in a DataLoader. Records that cannot be read are quarantined with their reason, never dropped."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

from omegaconf import DictConfig

from fusion.cli import Option, parse_key_values
from fusion.config import compose
from fusion.data.manifest import ManifestError, Record, RecordError, Rejection, load_manifest, parse_line
from fusion.serving import serving_batch_size
from fusion.tasks import SPLITS

# The model stack (torch, MLflow, Lightning) is imported where it is used, so --help and a bad command line
# answer at once.

STAGE = "predict"
REJECTED_SUFFIX = ".rejected.jsonl"
# The label a line without one is parsed with (labels are optional for prediction, required by parse_line).
UNLABELLED = {"multiclass": "unlabelled", "multilabel": [], "regression": 0.0}


class PredictError(RuntimeError):
    """A problem that stops the command (no manifest, nothing to predict); the message names the fix."""


def options(defaults: DictConfig) -> dict[str, Option]:
    return {
        "model": Option(
            None,
            "run id, runs:/<run id>/model, models:/<name>/<version>, or a local MLflow model or bundle folder",
            required=True,
        ),
        "manifest": Option(
            None, "manifest.jsonl to predict (labels optional; paths relative to its folder)", required=True
        ),
        "output": Option("predictions.csv", "the predictions CSV: id, prediction, one score column per class"),
        "split": Option(
            None,
            f"only this split ({', '.join(SPLITS)}) as the training pipeline assigns it "
            "(the run's data.split settings; needs labels); null: every record",
        ),
        "batch_size": Option(serving_batch_size(defaults), "records preprocessed and scored at once"),
        "num_workers": Option(0, "DataLoader worker processes that preprocess records"),
        "tracking_uri": Option(defaults.logger.tracking_uri, "the MLflow store holding the run"),
        "artifact_path": Option(defaults.serving.artifact_path, "the model's artifact folder in the run"),
        "rejected": Option(
            None,
            f"where records that cannot be read are listed with their reason; null: "
            f"<output without .csv>{REJECTED_SUFFIX}",
        ),
    }


EPILOG = """examples:
  python -m fusion.predict model=<run_id of outputs/train/run.json> manifest=data/sample/manifest.jsonl split=test
  python -m fusion.predict model=runs:/<run id>/model manifest=/data/new/manifest.jsonl output=new.csv num_workers=4
  python -m fusion.predict model=outputs/train manifest=...   (the run folder's bundle/, no MLflow needed)"""


class ManifestItems:
    """The model's samples of manifest records (a map-style dataset), preprocessed on access (in DataLoader
    workers); a record whose file cannot be read becomes ``{"id", "rejection"}``."""

    def __init__(self, records: Sequence[Record], processors: dict[str, Any]):
        self.records, self.processors = list(records), processors

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        record = self.records[index]
        present = [m for m in self.processors if record.has(m)]
        if not present:
            return self._rejected(
                record, None, f"none of the model's modalities ({', '.join(self.processors)}) is given"
            )
        sample: dict[str, Any] = {"id": record.id, **{m: None for m in self.processors}}
        for modality in present:
            try:
                sample[modality] = self.processors[modality].process(record)
            except RecordError as exc:
                return self._rejected(record, _file(record, modality), f"{modality}: {exc}")
        return sample

    @staticmethod
    def _rejected(record: Record, file: str | None, reason: str) -> dict[str, Any]:
        return {"id": record.id, "rejection": Rejection(record.id, record.line, STAGE, reason, file)}


def _file(record: Record, modality: str) -> str | None:
    return record.text_path if modality == "text" else getattr(record, modality)


def read_records(manifest: Path, bundle: Any, split: str | None) -> tuple[list[Record], list[Rejection]]:
    """The manifest's records (only ``split``'s, assigned as training assigns them) and its rejected lines."""
    task = bundle.task.name
    if split:
        if split not in SPLITS:
            raise PredictError(f"split={split!r} is not one of {', '.join(SPLITS)}; or leave it out for every record")
        loaded = load_manifest(manifest.parent, manifest.name, bundle.cfg.data.split, stage=STAGE, task=task)
        return [r for r in loaded.records if r.split == split], loaded.rejections
    try:
        lines = manifest.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as exc:
        raise PredictError(f"{manifest} is not UTF-8 ({exc}); re-save the manifest as UTF-8 JSON lines") from None
    records, rejections, seen = [], [], {}
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            record = parse_line(_with_label(text, task), number, task)
        except RecordError as exc:
            rejections.append(Rejection(None, number, STAGE, str(exc), manifest.name))
            continue
        if record.id in seen:
            rejections.append(
                Rejection(
                    record.id, number, STAGE, f"duplicate id (first seen on line {seen[record.id]})", manifest.name
                )
            )
            continue
        seen[record.id] = number
        records.append(record)
    return records, rejections


def _with_label(text: str, task: str) -> str:
    """The line with a placeholder label when it has none (prediction needs no label)."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError:
        return text  # parse_line reports it
    if isinstance(obj, dict) and obj.get("label") is None:
        obj["label"] = UNLABELLED[task]
        return json.dumps(obj)
    return text


def predict(cfg: DictConfig) -> dict[str, Any]:
    """Predict every (selected) record of cfg.manifest with cfg.model; write the predictions CSV and the rejected
    records; returns the summary (counts and paths)."""
    from fusion.serving.resolve import ModelReferenceError, bundle_dir

    manifest = Path(cfg.manifest).expanduser()
    if not manifest.is_file():
        raise PredictError(f"manifest not found: {manifest}; give manifest=<path to manifest.jsonl>")
    output = Path(cfg.output)
    rejected_path = Path(cfg.rejected) if cfg.rejected else output.with_name(output.stem + REJECTED_SUFFIX)
    with tempfile.TemporaryDirectory(prefix="fusion-predict-") as scratch:
        folder = bundle_dir(str(cfg.model), str(cfg.tracking_uri), scratch, str(cfg.artifact_path))
        from fusion.serving.bundle import BundleError, ModelBundle

        try:
            bundle = ModelBundle(folder)
        except BundleError as exc:
            raise ModelReferenceError(f"model={cfg.model!r}: {exc}") from None
        records, rejections = read_records(manifest, bundle, cfg.split)
        processors = {m: bundle.processor(m, manifest.parent, ".") for m in bundle.modalities}
    ids, scores = predict_records(
        bundle, ManifestItems(records, processors), rejections, int(cfg.batch_size), int(cfg.num_workers)
    )
    rejections.sort(key=lambda r: r.line)
    rejected_path.parent.mkdir(parents=True, exist_ok=True)
    rejected_path.write_text("".join(r.to_json() + "\n" for r in rejections), encoding="utf-8")
    if not ids:
        raise PredictError(
            f"no record of {manifest}{f' in split {cfg.split}' if cfg.split else ''} could be "
            f"predicted ({len(rejections)} rejected, listed in {rejected_path})"
        )
    from fusion.serving.predictions import write_predictions

    write_predictions(output, ids, scores, bundle.task)
    return {
        "predicted": len(ids),
        "rejected": len(rejections),
        "output": str(output),
        "rejected_file": str(rejected_path),
        "rejections": rejections,
        "rejections_shown": int(bundle.cfg.preprocess.rejections_shown),
    }


def predict_records(
    bundle: Any, items: ManifestItems, rejections: list[Rejection], batch_size: int, num_workers: int
) -> tuple[list[str], Any]:
    """The ids and scores of every readable item (``batch_size`` at a time, preprocessed by ``num_workers``
    DataLoader workers, with a progress bar); unreadable ones are appended to ``rejections``."""
    import torch
    from torch.utils.data import DataLoader
    from tqdm import tqdm

    loader = DataLoader(items, batch_size=batch_size, num_workers=num_workers, collate_fn=list)
    ids, scores = [], []
    for samples in tqdm(loader, desc="predict", unit="batch", file=sys.stderr):
        rejections += [s["rejection"] for s in samples if "rejection" in s]
        good = [s for s in samples if "rejection" not in s]
        if good:
            ids += [s["id"] for s in good]
            scores.append(bundle.scores(bundle.batch(good)))
    return ids, torch.cat(scores) if scores else torch.zeros(0)


def main(argv: Sequence[str] | None = None) -> None:
    defaults = compose()
    cfg = parse_key_values("python -m fusion.predict", __doc__.split("\n\n")[0], options(defaults), argv, EPILOG)
    from fusion.serving.resolve import ModelReferenceError

    try:
        summary = predict(cfg)
    except (PredictError, ModelReferenceError, ManifestError) as exc:
        raise SystemExit(f"error: {exc}") from None
    from fusion.preprocess.common import format_rejections

    print(
        f"predicted {summary['predicted']} record(s) -> {summary['output']}; rejected {summary['rejected']} -> "
        f"{summary['rejected_file']}"
    )
    if summary["rejections"]:
        print(format_rejections(summary["rejections"], summary["rejections_shown"]))


if __name__ == "__main__":
    main()
