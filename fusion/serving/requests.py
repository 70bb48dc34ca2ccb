"""Raw request values -> the items the model reads, through the preprocessing code of training.

A request row holds an optional ``id`` and one string per modality of the run: ``text`` is the text itself,
``image`` and ``audio`` are a file as base64 (plain, or a ``data:<mime>;base64,`` URL) or the path of a file
the server can read. Null (or an absent column) means the modality is missing. Decoded bytes are written to a
temporary file and read by the modality's processor, exactly as a manifest record's file would be."""

from __future__ import annotations

import base64
import binascii
import tempfile
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd

from fusion.data.manifest import Record, RecordError
from fusion.preprocess.common import Processor
from fusion.serving.bundle import ModelBundle

ID = "id"
DATA_URL, BASE64_MARK = "data:", ";base64,"
# What to send instead, per column: the second half of every error message.
FIXES = {
    ID: "send a string id, or leave it out (the row index is used)",
    "text": "send the text itself as a non-empty string, or null when the record has no text",
    "image": "send a PNG/JPEG (any format Pillow reads) as base64, plain or as a data:image/png;base64,... URL, "
             "or the path of an image file the server can read; null when the record has no image",
    "audio": "send a WAV/FLAC (any format libsndfile reads) as base64, plain or as a data:audio/wav;base64,... URL, "
             "or the path of an audio file the server can read; null when the record has no audio",
}


class RequestError(ValueError):
    """One bad value of a request: its row (index and id), column and reason, and what to send instead."""

    def __init__(self, row: int, record_id: str | None, column: str | None, reason: str, fix: str):
        self.row, self.record_id, self.column, self.reason, self.fix = row, record_id, column, reason, fix
        where = f"row {row}" + (f" (id {record_id!r})" if record_id is not None else "")
        where += f", column {column!r}" if column else ""
        super().__init__(f"{where}: {reason}; {fix}")


class _NotDecoded(RecordError):
    """The value is neither a file nor usable base64 (its message says so already)."""


class BadRequest(ValueError):
    """Every problem found in a request, one a line (the served model answers it with HTTP 400)."""

    def __init__(self, errors: Sequence[RequestError | str]):
        self.errors = list(errors)
        super().__init__(f"bad request ({len(self.errors)} problem(s)):\n" + "\n".join(f"  {e}" for e in self.errors))


def is_missing(value: Any) -> bool:
    """None, NaN or pandas' NA/NaT: how a null or absent value arrives in a request DataFrame."""
    missing = pd.isna(value)
    return isinstance(missing, (bool, np.bool_)) and bool(missing)


def decode_base64(value: str) -> bytes:
    """The bytes of a base64 string (a ``data:...;base64,`` URL too; URL-safe alphabet, whitespace and missing
    padding tolerated); raises ValueError with the reason."""
    if value.startswith(DATA_URL):
        header, mark, value = value.partition(BASE64_MARK)
        if not mark:
            raise ValueError(f"the data URL {header[:len(DATA_URL) + 40]!r}... is not base64 (no ';base64,')")
    compact = "".join(value.split()).translate(str.maketrans("-_", "+/"))
    compact += "=" * (-len(compact) % 4)
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"invalid base64 ({exc})") from None


def existing_file(value: str) -> Path | None:
    """The file ``value`` names on this machine (relative to the working folder), or None: no such file, or
    ``value`` cannot be a path at all (too long, a NUL byte)."""
    if value.startswith(DATA_URL):
        return None
    try:
        path = Path(value).expanduser()
        return path.resolve() if path.is_file() else None
    except (OSError, ValueError, RuntimeError):
        return None


class RequestDecoder:
    """Decodes request rows into model samples ``{"id", <modality>: item or None}`` with the bundle's
    processors (fitted tokenizer, image size, audio rate and log-mel statistics)."""

    def __init__(self, bundle: ModelBundle):
        self.bundle = bundle
        self.modalities = list(bundle.modalities)
        self._processors: dict[tuple[str, str], Processor] = {}

    @property
    def columns(self) -> list[str]:
        return [ID, *self.modalities]

    def check_columns(self, columns: Sequence[Any]) -> None:
        unknown = [str(c) for c in columns if c not in self.columns]
        if unknown:
            raise BadRequest([f"unknown column(s) {', '.join(map(repr, unknown))}: this model reads "
                              f"{', '.join(map(repr, self.columns))} (the run's modalities; each optional)"])

    def samples(self, rows: Sequence[Mapping[str, Any]], first_row: int = 0) -> list[dict[str, Any]]:
        """The samples of ``rows`` (numbered from ``first_row`` in messages); raises BadRequest listing every
        bad value of these rows."""
        samples, errors = [], []
        with tempfile.TemporaryDirectory(prefix="fusion-request-") as scratch:
            for offset, row in enumerate(rows):
                try:
                    samples.append(self.sample(first_row + offset, row, Path(scratch)))
                except BadRequest as exc:
                    errors.extend(exc.errors)
        if errors:
            raise BadRequest(errors)
        return samples

    def sample(self, index: int, row: Mapping[str, Any], scratch: Path) -> dict[str, Any]:
        """One row's sample; raises BadRequest with each bad value of the row."""
        record_id, errors = self._id(index, row)
        sample: dict[str, Any] = {"id": record_id if record_id is not None else str(index)}
        for modality in self.modalities:
            value = row.get(modality)
            sample[modality] = None
            if is_missing(value):
                continue
            try:
                sample[modality] = self.item(modality, value, scratch, f"row{index}-{modality}")
            except RecordError as exc:
                errors.append(RequestError(index, record_id, modality, str(exc), FIXES[modality]))
        if not errors and all(sample[m] is None for m in self.modalities):
            errors.append(RequestError(index, record_id, None,
                                       f"no modality: {', '.join(self.modalities)} are all missing or null",
                                       f"send at least one of them ({FIXES[self.modalities[0]]})"))
        if errors:
            raise BadRequest(errors)
        return sample

    def _id(self, index: int, row: Mapping[str, Any]) -> tuple[str | None, list[RequestError]]:
        value = row.get(ID)
        if is_missing(value):
            return None, []
        if not isinstance(value, str) or not value.strip():
            return None, [RequestError(index, None, ID, f"not a non-empty string ({type(value).__name__} {value!r})",
                                       FIXES[ID])]
        return value, []

    def item(self, modality: str, value: Any, scratch: Path, name: str) -> dict[str, Any]:
        """The processed item of one request value; raises RecordError with the reason."""
        if not isinstance(value, str):
            raise RecordError(f"expected a string, got {type(value).__name__} {str(value)[:40]!r}")
        if modality == "text":
            return self.processor(modality, scratch.anchor).process(Record(ID, None, "", 0, text=value))
        path = existing_file(value)
        if path is not None:
            return self._process_file(modality, path)
        try:
            return self._process_file(modality, self._write_decoded(value, scratch / name))
        except _NotDecoded:
            raise
        except RecordError as exc:
            raise RecordError(f"{exc} (the value was read as base64: it names no file on the server)") from None

    def _process_file(self, modality: str, path: Path) -> dict[str, Any]:
        relative = str(path.relative_to(path.anchor))
        return self.processor(modality, path.anchor).process(Record(ID, None, "", 0, **{modality: relative}))

    @staticmethod
    def _write_decoded(value: str, target: Path) -> Path:
        try:
            data = decode_base64(value)
        except ValueError as exc:
            raise _NotDecoded(f"neither the path of a file on the server nor base64: {exc}") from None
        if not data:
            raise _NotDecoded("empty file (the base64 decodes to 0 bytes)")
        target.write_bytes(data)
        return target.resolve()

    def processor(self, modality: str, anchor: str) -> Processor:
        """The modality's fitted processor reading files anywhere under ``anchor`` (the file system root)."""
        key = (modality, anchor)
        if key not in self._processors:
            self._processors[key] = self.bundle.processor(modality, anchor, ".")
        return self._processors[key]


def row_batches(n_rows: int, batch_size: int) -> Iterator[range]:
    """Consecutive row ranges of at most ``batch_size`` rows."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    for start in range(0, n_rows, batch_size):
        yield range(start, min(start + batch_size, n_rows))
