"""The one place every ingest format writes through: a valid `manifest.jsonl` and the report of what could not be
mapped.

A format turns each row of its source into manifest fields and calls `add`; the writer checks the record against
the data contract itself (`fusion.data.manifest.parse_line`, the function every stage uses), checks that the files
it names exist inside the output folder, refuses duplicate ids, and otherwise lists the row in
`manifest.rejected.jsonl` with its source and reason. A bad row is never fatal; only an empty result is.
"""

from __future__ import annotations

import io
import json
import os
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fusion.data.manifest import FILE_KEYS, RecordError, parse_line, reason_kind
from fusion.tasks import SPLITS

MANIFEST = "manifest.jsonl"
REJECTED = "manifest.rejected.jsonl"
# Split names used by published datasets, mapped to the pipeline's three.
SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "dev": "val",
    "test": "test",
    "testing": "test",
}


class IngestError(Exception):
    """A structural problem that stops the ingest: the source is not in the expected layout, or no row maps."""


@dataclass(frozen=True)
class Unmapped:
    """A source row that did not become a manifest record."""

    source: str
    reason: str
    id: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, sort_keys=True)


def split_name(value: Any) -> str | None:
    """A published split name ('dev', 'validation', ...) as train/val/test; None for unknown or empty."""
    return SPLIT_ALIASES.get(str(value).strip().lower()) if value not in (None, "") else None


class ManifestWriter:
    """Collects records for `<out_dir>/manifest.jsonl`; `close()` writes it and the report of unmapped rows.

    Paths given to `add` may be absolute or relative to `out_dir`; they must name existing files inside it, since
    the pipeline reads paths relative to the manifest and refuses any that leave the dataset folder."""

    def __init__(self, out_dir: str | Path, task: str = "multiclass"):
        self.out_dir = Path(out_dir).resolve()
        self.task = task
        self.records: list[dict[str, Any]] = []
        self.unmapped: list[Unmapped] = []
        self._seen: dict[str, str] = {}

    def add(self, source: str, **fields: Any) -> bool:
        """One record (id, label, split, text / text_path / image / audio); False when it was reported instead."""
        record = {key: value for key, value in fields.items() if value is not None}
        record_id = record.get("id")
        record["id"] = record_id = None if record_id is None else str(record_id).strip()
        try:
            for key in FILE_KEYS.values():
                if key in record:
                    record[key] = self._relative(record[key])
            if record.get("split") is not None:
                record["split"] = split_name(record["split"]) or _unknown_split(record["split"])
            parse_line(json.dumps(record), 0, self.task)  # the data contract, as every stage checks it
        except RecordError as exc:
            return self.reject(source, str(exc), record_id)
        if record_id in self._seen:
            return self.reject(source, f"duplicate id (first given by {self._seen[record_id]})", record_id)
        self._seen[record_id] = source
        self.records.append(record)
        return True

    def reject(self, source: str, reason: str, record_id: Any = None) -> bool:
        """Report a row that cannot be mapped (never fatal); returns False for `return writer.reject(...)`."""
        self.unmapped.append(Unmapped(source, reason, None if record_id is None else str(record_id)))
        return False

    def _relative(self, path: Any) -> str:
        if not isinstance(path, (str, os.PathLike)) or not str(path).strip():
            raise RecordError(f"file path must be a non-empty string, got {path!r}")
        target = Path(path) if Path(path).is_absolute() else self.out_dir / path
        target = Path(os.path.normpath(target))
        if not target.is_relative_to(self.out_dir):
            raise RecordError(
                f"file '{path}' is outside the output folder {self.out_dir}; write the manifest to a "
                f"folder that holds every file (--output)"
            )
        if not target.is_file():
            raise RecordError(f"file '{target.relative_to(self.out_dir)}' does not exist in {self.out_dir}")
        return target.relative_to(self.out_dir).as_posix()

    def write_bytes(self, relative: str, data: bytes) -> str:
        """A file the format generates (an image decoded from an array, an embedded audio file), under out_dir."""
        target = self.out_dir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        return relative

    def write_png(self, relative: str, pixels: np.ndarray) -> str:
        """A uint8 [H, W] or [H, W, 3] array as a PNG file."""
        from PIL import Image

        buffer = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(pixels)).save(buffer, format="PNG")
        return self.write_bytes(relative, buffer.getvalue())

    def write_npy(self, relative: str, array: np.ndarray) -> str:
        """A precomputed feature array ([T, F] or [F]) as a .npy file."""
        buffer = io.BytesIO()
        np.save(buffer, np.asarray(array), allow_pickle=False)
        return self.write_bytes(relative, buffer.getvalue())

    def close(self) -> dict[str, Any]:
        """Write manifest.jsonl (atomically) and manifest.rejected.jsonl; return the summary."""
        if not self.records:
            example = self.unmapped[0].reason if self.unmapped else "the source holds no rows"
            raise IngestError(
                f"no row could be mapped ({len(self.unmapped)} reported, e.g. {example}); check the "
                f"layout and the column mapping (--help)"
            )
        self.out_dir.mkdir(parents=True, exist_ok=True)
        _write_atomic(
            self.out_dir / MANIFEST,
            "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in self.records),
        )
        _write_atomic(self.out_dir / REJECTED, "".join(u.to_json() + "\n" for u in self.unmapped))
        splits = Counter(r.get("split", "") for r in self.records)
        return {
            "manifest": str(self.out_dir / MANIFEST),
            "rejected_file": str(self.out_dir / REJECTED),
            "task": self.task,
            "records": len(self.records),
            "splits": {**{s: splits.get(s, 0) for s in SPLITS}, "unsplit": splits.get("", 0)},
            "modalities": {m: sum(key in r for key in _keys(m) for r in self.records) for m in FILE_KEYS},
            "unmapped": len(self.unmapped),
            "unmapped_by_reason": dict(Counter(reason_kind(u.reason) for u in self.unmapped)),
            "examples": [asdict(u) for u in self.unmapped[:5]],
            "unseen_classes": self._unseen_classes(),
        }

    def _unseen_classes(self) -> dict[str, Any]:
        """Val/test records naming a class no training record has: the stages will reject them (the classes are
        those of the training split), so the report says so now."""
        if self.task == "regression":
            return {"records": 0, "classes": []}
        names = [(r.get("split"), [r["label"]] if isinstance(r["label"], str) else r["label"]) for r in self.records]
        known = {name for split, labels in names if split == "train" for name in labels}
        unseen = [(split, [n for n in labels if n not in known]) for split, labels in names if split in ("val", "test")]
        unseen = [names for _, names in unseen if names]
        return {"records": len(unseen) if known else 0, "classes": sorted({n for ns in unseen for n in ns})[:10]}


def _keys(modality: str) -> tuple[str, ...]:
    return ("text", "text_path") if modality == "text" else (FILE_KEYS[modality],)


def _unknown_split(value: Any) -> str:
    raise RecordError(f"split {value!r} is not one of {', '.join(sorted(SPLIT_ALIASES))}")


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def format_report(summary: dict[str, Any]) -> str:
    """What was written, what was not and why, and the command that trains on it."""
    splits = ", ".join(f"{name} {count}" for name, count in summary["splits"].items() if count)
    present = ", ".join(f"{m} {n}" for m, n in summary["modalities"].items())
    lines = [f"wrote {summary['records']} record(s) to {summary['manifest']} ({splits}; with {present})"]
    if summary["unmapped"]:
        lines.append(
            f"could not map {summary['unmapped']} row(s), listed with their reason in {summary['rejected_file']}:"
        )
        lines += [f"  {n:6d} × {reason}" for reason, n in sorted(summary["unmapped_by_reason"].items())]
        lines += [f"  e.g. {u['source']}: {u['reason']}" for u in summary["examples"]]
    unseen = summary["unseen_classes"]
    if unseen["records"]:
        lines.append(
            f"note: {unseen['records']} val/test record(s) name a class no training record has "
            f"({', '.join(unseen['classes'])}); the preprocessing stages will reject them"
        )
    if summary["splits"]["unsplit"]:
        lines.append("records without a split get the pipeline's seeded stratified split (data.split.*)")
    root = str(Path(summary["manifest"]).parent)
    task = "" if summary["task"] == "multiclass" else f" -S task={summary['task']}"
    lines.append(f"next: uv run dvc exp run -S data.root={root}{task}")
    return "\n".join(lines)
