"""The preprocessing stage shared by every modality: manifest → shards, rejections, summary."""

from __future__ import annotations

import functools
import json
import os
import shutil
from collections import Counter
from pathlib import Path
from typing import Any, Iterator, Protocol

from omegaconf import DictConfig, OmegaConf

from fusion.data.manifest import (
    FILE_KEYS,
    SPLITS,
    ManifestError,
    Record,
    RecordError,
    Rejection,
    load_manifest,
    reason_kind,
)
from fusion.data.shards import write_json, write_jsonl, write_shards
from fusion.preprocess.atomic import atomic_output


class RejectedRecordsError(Exception):
    """The stage fails over its rejected records, its previous output kept; ``summary`` and ``rejections`` say what
    was rejected and why."""

    def __init__(self, summary: dict[str, Any], rejections: list[Rejection], message: str):
        self.summary, self.rejections = summary, rejections
        super().__init__(message)


class StrictModeError(RejectedRecordsError):
    """preprocess.strict is on and records were rejected."""

    def __init__(self, summary: dict[str, Any], rejections: list[Rejection], out_dir: Path):
        super().__init__(
            summary,
            rejections,
            f"{len(rejections)} record(s) rejected with preprocess.strict=true, so {out_dir} was left as it was. "
            f"Fix or remove the records listed, or run without --strict (preprocess.strict=false) to keep the "
            f"good records and list the rejected ones in rejected.jsonl.",
        )


class NothingKeptError(RejectedRecordsError):
    """Every record holding the modality was rejected: a setup problem (the paths, a folder, a format), not a few
    bad records, and a model trained on it would never see the modality."""

    def __init__(self, summary: dict[str, Any], rejections: list[Rejection], out_dir: Path):
        modality = summary["modality"]
        super().__init__(
            summary,
            rejections,
            f"no {modality} record could be used: all {summary['records'] - summary['missing']} records with "
            f"{modality} were rejected (reasons above), so {out_dir} was left as it was. Fix what the reasons name "
            f"(a path that escapes the dataset folder is often a symbolic link to a folder elsewhere: copy the "
            f"files in, or put the manifest beside them), or leave {modality} out (modality=...).",
        )


class Processor(Protocol):
    """What a modality provides: fit on training records, then turn one record into tensors."""

    modality: str

    def fit(self, records: list[Record]) -> None: ...
    def process(self, record: Record) -> dict[str, Any]: ...
    def meta(self) -> dict[str, Any]: ...
    def save(self, out_dir: Path) -> None: ...
    def load(self, out_dir: Path) -> None: ...


def restored_processor(
    modality: str, cfg: Any, state_dir: str | Path, root: str | Path = ".", folder: str = "."
) -> Processor:
    """The modality's processor with the state its preprocessing stage fitted (tokenizer, log-mel statistics,
    feature statistics) read back from ``state_dir`` (a processed modality folder), reading raw files under
    ``root``/``folder``."""
    from fusion.preprocess.features import KIND, FeatureProcessor

    meta = Path(state_dir) / "meta.json"
    if meta.is_file() and json.loads(meta.read_text(encoding="utf-8")).get("kind") == KIND:
        processor: Processor = FeatureProcessor(modality, {}, Path(root), folder)
    else:
        processor = _processors()[modality](cfg, Path(root), folder)
    processor.load(Path(state_dir))
    return processor


def stage_processor(modality: str, cfg: DictConfig, records: list[Record], root: Path, folder: str) -> Processor:
    """The processor of a preprocessing stage: the modality's own, or the feature-array one when most of the
    records give the modality as .npy/.npz arrays (fusion/preprocess/features.py)."""
    from fusion.preprocess.features import FeatureProcessor, holds_features

    if holds_features(records, modality):
        return FeatureProcessor(modality, cfg.preprocess.features, root, folder)
    return _processors()[modality](cfg.preprocess[modality], root, folder)


def _processors() -> dict[str, type]:
    from fusion.preprocess.audio import AudioProcessor
    from fusion.preprocess.image import ImageProcessor
    from fusion.preprocess.text import TextProcessor

    return {p.modality: p for p in (TextProcessor, ImageProcessor, AudioProcessor)}


def process_or_reject(record: Record, processor: Processor, reject_dir: str, stage: str) -> Iterator[dict]:
    """litdata worker function: yield the record's item, or log its rejection and yield nothing."""
    try:
        item = processor.process(record)
    except RecordError as exc:
        rejection = Rejection(record.id, record.line, stage, str(exc), _modality_file(record, processor.modality))
        with open(Path(reject_dir) / f"worker-{os.getpid()}.jsonl", "a", encoding="utf-8") as sink:
            sink.write(rejection.to_json() + "\n")
        return
    yield {"id": record.id, **item}


def _modality_file(record: Record, modality: str) -> str | None:
    return getattr(record, FILE_KEYS[modality])


def _collect_rejections(reject_dir: Path) -> list[Rejection]:
    rows = [
        json.loads(line)
        for part in sorted(reject_dir.glob("*.jsonl"))
        for line in part.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    return [Rejection(**row) for row in rows]


def run_preprocess(modality: str, cfg: DictConfig) -> dict[str, Any]:
    """Preprocess one modality of the dataset at cfg.data.root into cfg.data.processed_dir/<modality>.

    Output is built in a work folder of this run and swapped in at the end (fusion/preprocess/atomic.py),
    so an interrupted run never leaves a folder that looks complete. With preprocess.strict any rejection
    raises StrictModeError and the previous output stays.
    """
    stage = f"preprocess_{modality}"
    data = cfg.data
    task = OmegaConf.select(cfg, "task.name", default="multiclass")
    manifest = load_manifest(data.root, data.manifest, data.split, stage=stage, task=task)
    processor = stage_processor(modality, cfg, manifest.records, manifest.root, data.dirs[modality])
    out_dir = Path(data.processed_dir) / modality
    with atomic_output(out_dir) as work_dir:
        reject_dir = work_dir / "_rejected"
        reject_dir.mkdir()
        with_modality = [r for r in manifest.records if r.has(modality)]
        if manifest.carved_val:
            print(
                f"[{stage}] the manifest names no validation record: {manifest.carved_val} training records became "
                f'the validation split (stratified, data.split.seed and data.split.val); give records "split": '
                f'"val" to choose them',
                flush=True,
            )
        processor.fit([r for r in with_modality if r.split == "train"])
        worker = functools.partial(process_or_reject, processor=processor, reject_dir=str(reject_dir), stage=stage)
        for split in SPLITS:
            print(
                f"[{stage}] {split}: {sum(r.split == split for r in with_modality)} records with {modality}", flush=True
            )
        ids = write_shards(
            worker, with_modality, work_dir / "shards", int(cfg.preprocess.num_workers), str(cfg.preprocess.chunk_bytes)
        )
        rejections = sorted(manifest.rejections + _collect_rejections(reject_dir), key=lambda r: (r.line, r.reason))
        summary = _summary(modality, manifest.records, with_modality, ids, rejections)
        if with_modality and not ids:
            raise NothingKeptError(summary, rejections, out_dir)
        if rejections and OmegaConf.select(cfg, "preprocess.strict", default=False):
            raise StrictModeError(summary, rejections, out_dir)
        shutil.rmtree(reject_dir)
        processor.save(work_dir)
        write_json(work_dir / "ids.json", ids)
        write_json(
            work_dir / "meta.json",
            {"modality": modality, "task": task, **manifest.labels.info, **processor.meta(), "summary": summary},
        )
        write_jsonl(
            work_dir / "records.jsonl",
            (json.dumps({"id": r.id, "label": r.label, "split": r.split}) for r in manifest.records),
        )
        write_jsonl(work_dir / "rejected.jsonl", (r.to_json() for r in rejections))
    return summary


def _summary(
    modality: str, records: list[Record], with_modality: list[Record], ids: list[str], rejections: list[Rejection]
) -> dict[str, Any]:
    """Kept per split, missing, rejected (total and by kind of reason): meta.json's `summary`."""
    split_of = {r.id: r.split for r in with_modality}
    return {
        "modality": modality,
        "records": len(records),
        "kept": {split: sum(split_of[i] == split for i in ids) for split in SPLITS},
        "missing": sum(not r.has(modality) for r in records),
        "rejected": len(rejections),
        "rejected_by_reason": dict(Counter(reason_kind(r.reason) for r in rejections)),
    }


def format_summary(summary: dict[str, Any]) -> str:
    """Human-readable stage summary: kept per split, missing, rejected by reason."""
    kept = ", ".join(f"{split} {n}" for split, n in summary["kept"].items())
    lines = [
        f"{summary['modality']}: {summary['records']} valid manifest records; kept {kept}; "
        f"modality missing in {summary['missing']}; rejected {summary['rejected']}"
    ]
    lines += [f"  rejected {n:5d} × {reason}" for reason, n in sorted(summary["rejected_by_reason"].items())]
    return "\n".join(lines)


def format_rejections(rejections: list[Rejection], limit: int) -> str:
    """The first `limit` rejections, one a line (manifest line, id, file, reason), and how many more."""
    lines = [f"  line {r.line}, id {r.id or '?'}, file {r.file or '-'}: {r.reason}" for r in rejections[:limit]]
    if len(rejections) > limit:
        lines.append(f"  ... and {len(rejections) - limit} more")
    return "\n".join(["rejected records:", *lines])


__all__ = [
    "run_preprocess",
    "format_summary",
    "format_rejections",
    "ManifestError",
    "NothingKeptError",
    "RejectedRecordsError",
    "StrictModeError",
]
