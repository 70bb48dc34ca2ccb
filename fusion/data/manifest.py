"""The dataset contract: read and validate `manifest.jsonl`, assign splits, resolve file paths.

Every preprocessing stage calls `load_manifest` with the same settings, so all stages agree on
which records exist, their labels and their splits, without a stage of their own. What a valid
label is depends on the task (fusion/tasks/labels.py): a class name, a list of them, or a number.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from fusion.meta import FEATURES  # noqa: F401 (re-exported: fusion.data.augment imports it from here)
from fusion.tasks import SPLITS
from fusion.tasks.labels import LabelError, LabelSpec, label_spec

MODALITIES = ("text", "image", "audio")
# The manifest keys that carry each modality; `text` may be inline or a file.
MODALITY_KEYS = {"text": ("text", "text_path"), "image": ("image",), "audio": ("audio",)}
# The manifest key that names each modality's file (inline text is no file).
FILE_KEYS = {"text": "text_path", "image": "image", "audio": "audio"}


class ManifestError(Exception):
    """A structural problem that stops a stage: the manifest is unreadable or leaves no record."""


class RecordError(Exception):
    """A problem with one record: the record is quarantined with this message as its reason."""


@dataclass(frozen=True)
class Record:
    """One valid manifest line; modality fields are None where the modality is missing.

    `label` is as given: a class name (multiclass), a list of class names (multilabel) or a number
    (regression).
    """

    id: str
    label: Any
    split: str
    line: int
    text: str | None = None
    text_path: str | None = None
    image: str | None = None
    audio: str | None = None

    def has(self, modality: str) -> bool:
        return any(getattr(self, key) is not None for key in MODALITY_KEYS[modality])


@dataclass(frozen=True)
class Rejection:
    """A record (or manifest line) a stage could not use, with a human-readable reason."""

    id: str | None
    line: int
    stage: str
    reason: str
    file: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, sort_keys=True)


@dataclass
class Manifest:
    """The valid records, the label info (from the training split) and what was rejected.

    `labels.info` is what meta.json stores: `classes` (empty for regression) and, for regression,
    `target_stats` (count, mean, std, min, max of the training labels).
    """

    root: Path
    records: list[Record]
    labels: LabelSpec
    rejections: list[Rejection] = field(default_factory=list)
    carved_val: int = 0  # training records made the validation split (the manifest named none: carve_validation)

    @property
    def classes(self) -> list[str]:
        return self.labels.classes


def _optional_str(obj: Mapping[str, Any], key: str) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise RecordError(f"field '{key}' must be a string or null, got {type(value).__name__}")
    return value


def _json(text: str) -> Any:
    """The JSON value of a line; raises RecordError for malformed JSON, JSON nested deeper than Python's recursion
    limit, or an integer longer than Python converts (4,300 digits)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise RecordError(f"malformed JSON ({exc.msg} at column {exc.colno})") from None
    except RecursionError:
        raise RecordError(
            "JSON nested too deeply to read (arrays or objects inside each other past Python's recursion limit)"
        ) from None
    except ValueError as exc:  # int_max_str_digits
        raise RecordError(f"unreadable JSON number ({str(exc).split(';')[0]})") from None


def not_unicode(value: Any) -> bool:
    """Whether a string (or a list of them) holds a lone UTF-16 surrogate (a JSON escape like \\ud800 without its
    pair): such a string cannot be written as UTF-8 to ids.json or rejected.jsonl."""
    strings = value if isinstance(value, list) else [value]
    try:
        for string in strings:
            if isinstance(string, str):
                string.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def parse_line(text: str, line: int, task: str = "multiclass") -> Record | None:
    """Parse one manifest line into a Record (split may be empty); raises RecordError."""
    obj = _json(text)
    if not isinstance(obj, dict):
        raise RecordError(f"expected a JSON object, got {type(obj).__name__}")
    record_id = obj.get("id")
    if not isinstance(record_id, str) or not record_id.strip():
        raise RecordError("missing or empty 'id' (a unique string is required)")
    try:
        label = label_spec(task).parse(obj.get("label"))
    except LabelError as exc:
        raise RecordError(str(exc)) from None
    split = obj.get("split") or ""
    if split and split not in SPLITS:
        raise RecordError(f"split '{split}' is not one of {', '.join(SPLITS)} (or leave it out)")
    fields = {key: _optional_str(obj, key) for keys in MODALITY_KEYS.values() for key in keys}
    bad = [
        key
        for key, value in [("id", record_id), ("label", label), ("split", split), *fields.items()]
        if not_unicode(value)
    ]
    if bad:
        raise RecordError(
            f"field(s) {', '.join(map(repr, bad))} hold a lone UTF-16 surrogate escape (\\ud800 to "
            f"\\udfff without its pair), which is not text; fix the escape or the writer of the file"
        )
    if fields["text"] is not None and fields["text_path"] is not None:
        raise RecordError("both 'text' and 'text_path' are set; give one of them")
    record = Record(id=record_id, label=label, split=split, line=line, **fields)
    if not any(record.has(m) for m in MODALITIES):
        raise RecordError("no modality: text, text_path, image and audio are all missing or null")
    return record


def stratified_splits(
    records: list[Record], seed: int, fractions: Mapping[str, float], stratum: Callable[[Any], str] = str
) -> dict[str, str]:
    """Seeded stratified split of records without one: id -> split, independent of line order.

    Records are stratified by `stratum(label)` (the class name for multiclass)."""
    by_label: dict[str, list[str]] = defaultdict(list)
    for record in records:
        by_label[stratum(record.label)].append(record.id)
    total = sum(float(fractions[s]) for s in SPLITS)
    rng = np.random.default_rng(seed)
    assignment: dict[str, str] = {}
    for label in sorted(by_label):
        ids = sorted(by_label[label])
        order = rng.permutation(len(ids))
        n_val = int(round(len(ids) * float(fractions["val"]) / total))
        n_test = int(round(len(ids) * float(fractions["test"]) / total))
        if n_val + n_test >= len(ids):  # keep at least one training example per class
            n_val, n_test = max(0, min(n_val, len(ids) - 1 - n_test)), max(0, min(n_test, len(ids) - 1))
        for rank, idx in enumerate(order):
            split = "val" if rank < n_val else "test" if rank < n_val + n_test else "train"
            assignment[ids[idx]] = split
    return assignment


def load_manifest(
    root: str | Path, manifest: str, split_cfg: Mapping[str, Any], stage: str, task: str = "multiclass"
) -> Manifest:
    """Read and validate the manifest for `task` (task.name); invalid lines become rejections (their
    `file` is the manifest, where the fix goes), structural errors raise."""
    spec = label_spec(task)
    root = Path(root)
    path = root / manifest
    if not path.is_file():
        raise ManifestError(
            f"manifest not found: {path}. Point the pipeline at a dataset folder holding "
            f"'{manifest}' with data.root=/path/to/dataset (see docs/data-contract.md)."
        )
    try:
        lines = split_lines(path.read_text(encoding="utf-8-sig"))  # -sig: a byte-order mark is dropped
    except UnicodeDecodeError as exc:
        raise ManifestError(f"{path} is not UTF-8 ({exc}); re-save the manifest as UTF-8 JSON lines.") from None

    rejections: list[Rejection] = []
    records: list[Record] = []
    first_line: dict[str, int] = {}
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            record = parse_line(text, number, task)
        except RecordError as exc:
            rejections.append(Rejection(_peek_id(text), number, stage, str(exc), manifest))
            continue
        if record.id in first_line:
            rejections.append(
                Rejection(
                    record.id, number, stage, f"duplicate id (first seen on line {first_line[record.id]})", manifest
                )
            )
            continue
        first_line[record.id] = number
        records.append(record)

    unsplit = [r for r in records if not r.split]
    assignment = stratified_splits(unsplit, int(split_cfg["seed"]), split_cfg, spec.stratum) if unsplit else {}
    records = [r if r.split else _with_split(r, assignment[r.id]) for r in records]
    records, carved = carve_validation(records, split_cfg, spec.stratum)

    labels = spec.fit(r.label for r in records if r.split == "train")
    kept = []
    for record in records:
        reason = labels.unknown(record.label)
        if reason is None:
            kept.append(record)
        else:
            rejections.append(Rejection(record.id, record.line, stage, reason, manifest))
    if not kept:
        raise ManifestError(
            f"{path}: no usable record left ({len(rejections)} rejected, e.g. "
            f"{rejections[0].reason if rejections else 'the file is empty'}). Fix the manifest lines."
        )
    return Manifest(root=root, records=kept, labels=labels, rejections=rejections, carved_val=carved)


def carve_validation(
    records: list[Record], split_cfg: Mapping[str, Any], stratum: Callable[[Any], str] = str
) -> tuple[list[Record], int]:
    """When no record is in the validation split (a manifest that names only train and test), the seeded stratified
    share ``val / (train + val)`` of ``data.split`` of the training records becomes it, as the automatic split
    would have made it; training needs validation records to stop early and pick its checkpoint. Returns the
    records and how many moved (0: a validation split was there, or ``data.split.val`` is 0)."""
    train = [r for r in records if r.split == "train"]
    if any(r.split == "val" for r in records) or not train or float(split_cfg["val"]) <= 0:
        return records, 0
    fractions = {"train": float(split_cfg["train"]), "val": float(split_cfg["val"]), "test": 0.0}
    assignment = stratified_splits(train, int(split_cfg["seed"]), fractions, stratum)
    moved = {i for i, split in assignment.items() if split == "val"}
    return [_with_split(r, "val") if r.id in moved else r for r in records], len(moved)


def split_lines(text: str) -> list[str]:
    """JSON Lines: lines end at "\\n" (a "\\r" before it is dropped), never at the other characters
    str.splitlines() breaks at (U+2028, U+0085, ...), which JSON strings may hold unescaped."""
    return [line.removesuffix("\r") for line in text.split("\n")]


def _with_split(record: Record, split: str) -> Record:
    return Record(**{**asdict(record), "split": split})


def _peek_id(text: str) -> str | None:
    """Best-effort id of a bad line, so its rejection can still be traced to a record."""
    try:
        obj = _json(text)
    except RecordError:
        return None
    value = obj.get("id") if isinstance(obj, dict) else None
    return value if isinstance(value, str) and not not_unicode(value) else None


def resolve_file(root: Path, relative: str, folder: str) -> Path:
    """Resolve a manifest path safely: it must stay inside the dataset's `folder`, exist and hold data."""
    if Path(relative).is_absolute():
        raise RecordError(f"absolute path '{relative}' is not allowed; paths are relative to the manifest")
    base = root.resolve()
    try:
        target = (base / relative).resolve()  # follows symlinks, so a link pointing outside is caught
        allowed = (base / folder).resolve()
        if not target.is_relative_to(base):
            raise RecordError(f"path '{relative}' escapes the dataset folder")
        if not target.is_relative_to(allowed):
            raise RecordError(
                f"path '{relative}' is outside the modality's folder '{folder}' (data.dirs); move the file "
                f"there, or recompose params.yaml (`make params`; `dvc exp run` does it) so that data.dirs "
                f"follows the manifest again, or set data.dirs.<modality>='.'"
            )
        if not target.is_file():
            problem = "is not a regular file" if target.exists() else "does not exist"
            raise RecordError(f"file '{relative}' {problem}")
        size = target.stat().st_size
    except (ValueError, OSError, RuntimeError) as exc:  # a NUL byte, a name too long, a symlink loop, ...
        raise RecordError(f"path {relative!r} cannot be resolved ({exc})") from None
    if size == 0:
        raise RecordError(f"file '{relative}' is empty (0 bytes)")
    return target


def reason_kind(reason: str) -> str:
    """Group reasons for the summary: quoted names elided, text before the first detail (':' or '(')."""
    return re.sub(r"'[^']*'", "'…'", reason).split(":")[0].split("(")[0].strip()
