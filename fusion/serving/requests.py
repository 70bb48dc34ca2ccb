"""Raw request values -> the items the model reads, through the preprocessing code of training.

A request row holds an optional ``id`` and one string per modality of the run: ``text`` is the text itself,
``image`` and ``audio`` are a file as base64 (plain, or a ``data:<mime>;base64,`` URL) or the path of a file
the server may read (inside ``serving.allowed_roots``, fusion/serving/access.py). Null (or an absent column) means
the modality is missing. Decoded bytes are written to a temporary file and read by the modality's processor,
exactly as a manifest record's file would be. The request limits (``serving.limits``) are checked before the work
they bound: rows and bytes of the whole request first, then each value's size, image pixels and audio seconds
from the file's header."""

from __future__ import annotations

import base64
import binascii
import reprlib
import tempfile
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
import soundfile as sf

from fusion.data.manifest import Record, RecordError, not_unicode
from fusion.preprocess.common import Processor
from fusion.preprocess.image import ImageTooLarge
from fusion.serving.access import AllowedRoots
from fusion.serving.bundle import ModelBundle
from fusion.serving.settings import Limits, ServingSettings, setting_name

ID = "id"
DATA_URL, BASE64_MARK = "data:", ";base64,"
# What to send instead, per column: the second half of every error message.
FIXES = {
    ID: "send a string id, or leave it out (the row index is used)",
    "text": "send the text itself as a non-empty string, or null when the record has no text",
    "image": "send a PNG/JPEG (any format Pillow reads) as base64, plain or as a data:image/png;base64,... URL, "
    "or the path of an image file in a folder of the server's serving.allowed_roots; null when the record "
    "has no image",
    "audio": "send a WAV/FLAC (any format libsndfile reads) as base64, plain or as a data:audio/wav;base64,... URL, "
    "or the path of an audio file in a folder of the server's serving.allowed_roots; null when the record "
    "has no audio",
}
# Values quoted in messages are cut short (an id or a wrong-typed value may be huge); so is a list of unknown columns.
QUOTE = reprlib.Repr()
QUOTE.maxstring = QUOTE.maxother = 60
QUOTE.maxlist = QUOTE.maxdict = 4
QUOTE.maxlevel = 2
MAX_LISTED = 10
LONE_SURROGATE = (
    "not text: it holds a lone UTF-16 surrogate escape (\\ud800 to \\udfff without its pair), which no UTF-8 text has"
)
NON_STRING_BYTES = 8  # what a non-string value counts towards max_request_bytes (a number's size in a body)


class RequestError(ValueError):
    """One bad value of a request: its row (index and id), column and reason, and what to send instead."""

    def __init__(self, row: int, record_id: str | None, column: str | None, reason: str, fix: str):
        self.row, self.record_id, self.column, self.reason, self.fix = row, record_id, column, reason, fix
        where = f"row {row}" + (f" (id {QUOTE.repr(record_id)})" if record_id is not None else "")
        where += f", column {column!r}" if column else ""
        super().__init__(f"{where}: {reason}; {fix}")


class _NotDecoded(RecordError):
    """The value is neither a file nor usable base64 (its message says so already)."""


class LimitError(RecordError):
    """A value over one of the request limits; ``fix`` names the setting (it replaces the column's usual fix)."""

    def __init__(self, reason: str, fix: str):
        self.fix = fix
        super().__init__(reason)


def over_limit(limit: str, allowed: float, what: str, unit: str, fix: str = "send at most") -> tuple[str, str]:
    """The reason and the fix of something over ``serving.limits.<limit>``."""
    return (
        f"{what} is over the server's limit of {allowed:,} {unit} ({setting_name(limit)})",
        f"{fix} {allowed:,} {unit}, or ask the server's operator to raise {setting_name(limit)}",
    )


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
            raise ValueError(f"the data URL {header[: len(DATA_URL) + 40]!r}... is not base64 (no ';base64,')")
    compact = "".join(value.split()).translate(str.maketrans("-_", "+/"))
    compact += "=" * (-len(compact) % 4)
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"invalid base64 ({exc})") from None


def value_bytes(value: Any) -> int:
    """The size a request value adds to the request: a string's UTF-8 bytes (lone surrogates counted as 3), a
    small constant for anything else (a number, a null, a wrong-typed value refused on its own)."""
    if not isinstance(value, str):
        return NON_STRING_BYTES
    return len(value) if value.isascii() else len(value.encode("utf-8", "surrogatepass"))


class RequestDecoder:
    """Decodes request rows into model samples ``{"id", <modality>: item or None}`` with the bundle's
    processors (fitted tokenizer, image size, audio rate and log-mel statistics), within the serving settings."""

    def __init__(self, bundle: ModelBundle, settings: ServingSettings | None = None):
        self.bundle = bundle
        self.settings = settings or ServingSettings.from_config(bundle.cfg)
        self.limits: Limits = self.settings.limits
        self.roots = AllowedRoots(self.settings.allowed_roots)
        self.modalities = list(bundle.modalities)
        self._processors: dict[tuple[str, str], Processor] = {}
        self._not_a_file = (
            "it names no readable file in a folder of serving.allowed_roots"
            if self.roots
            else "paths are refused: the server's serving.allowed_roots is empty"
        )

    @property
    def columns(self) -> list[str]:
        return [ID, *self.modalities]

    def check_columns(self, columns: Sequence[Any]) -> None:
        unknown = [str(c) for c in columns if c not in self.columns]
        if unknown:
            raise BadRequest(
                [
                    f"unknown column(s) {', '.join(QUOTE.repr(c) for c in unknown[:MAX_LISTED])}"
                    f"{' and more' if len(unknown) > MAX_LISTED else ''}: this model reads "
                    f"{', '.join(map(repr, self.columns))} (the run's modalities; each optional)"
                ]
            )

    def check_size(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Refuse a request over ``max_rows`` or ``max_request_bytes`` before any value is decoded."""
        problems = []
        if len(rows) > self.limits.max_rows:
            reason, fix = over_limit(
                "max_rows",
                self.limits.max_rows,
                f"the request's {len(rows):,} rows",
                "rows",
                "split it into requests of at most",
            )
            problems.append(f"{reason}; {fix}")
        size = sum(value_bytes(value) for row in rows for value in row.values())
        if size > self.limits.max_request_bytes:
            reason, fix = over_limit(
                "max_request_bytes",
                self.limits.max_request_bytes,
                f"the request's values ({size:,} bytes together)",
                "bytes",
                "send requests of at most",
            )
            problems.append(f"{reason}; {fix}")
        if problems:
            raise BadRequest(problems)

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
                fix = exc.fix if isinstance(exc, LimitError) else FIXES[modality]
                errors.append(RequestError(index, record_id, modality, str(exc), fix))
        if not errors and all(sample[m] is None for m in self.modalities):
            errors.append(
                RequestError(
                    index,
                    record_id,
                    None,
                    f"no modality: {', '.join(self.modalities)} are all missing or null",
                    f"send at least one of them ({FIXES[self.modalities[0]]})",
                )
            )
        if errors:
            raise BadRequest(errors)
        return sample

    def _id(self, index: int, row: Mapping[str, Any]) -> tuple[str | None, list[RequestError]]:
        value = row.get(ID)
        if is_missing(value):
            return None, []
        if not isinstance(value, str) or not value.strip():
            return None, [
                RequestError(
                    index, None, ID, f"not a non-empty string ({type(value).__name__} {QUOTE.repr(value)})", FIXES[ID]
                )
            ]
        if not_unicode(value):
            return None, [RequestError(index, None, ID, LONE_SURROGATE, FIXES[ID])]
        return value, []

    def item(self, modality: str, value: Any, scratch: Path, name: str) -> dict[str, Any]:
        """The processed item of one request value; raises RecordError with the reason (LimitError when the
        value is over a limit)."""
        if not isinstance(value, str):
            raise RecordError(f"expected a string, got {type(value).__name__} {QUOTE.repr(value)}")
        if not_unicode(value):
            raise RecordError(LONE_SURROGATE)
        if modality == "text":
            self._check_bytes(value_bytes(value), "the text")
            return self.processor(modality, scratch.anchor).process(Record(ID, None, "", 0, text=value))
        allowed = self.roots.file(value)
        if allowed is not None:
            self._check_bytes(allowed.size, "the file")
            return self._process_file(modality, allowed.path)
        try:
            return self._process_file(modality, self._write_decoded(value, scratch / name))
        except (_NotDecoded, LimitError):
            raise
        except RecordError as exc:
            raise RecordError(f"{exc} (the value was read as base64: {self._not_a_file})") from None

    def _check_bytes(self, size: int, what: str) -> None:
        if size > self.limits.max_value_bytes:
            raise LimitError(
                *over_limit(
                    "max_value_bytes", self.limits.max_value_bytes, f"{what} ({size:,} bytes)", "bytes per value"
                )
            )

    def _process_file(self, modality: str, path: Path) -> dict[str, Any]:
        if modality == "audio":
            self._check_audio_seconds(path)
        relative = str(path.relative_to(path.anchor))
        try:
            return self.processor(modality, path.anchor).process(Record(ID, None, "", 0, **{modality: relative}))
        except ImageTooLarge as exc:
            raise LimitError(
                str(exc), over_limit("max_image_pixels", self.limits.max_image_pixels, "", "pixels")[1]
            ) from exc

    def _check_audio_seconds(self, path: Path) -> None:
        """Refuse audio whose header declares more than ``max_audio_seconds`` (a file that does not decode is left
        to the processor, which says why)."""
        try:
            info = sf.info(str(path))
            seconds = info.frames / info.samplerate
        except Exception:  # noqa: BLE001 - libsndfile raises several types on a damaged header; the processor reports it
            return
        if seconds > self.limits.max_audio_seconds:
            raise LimitError(
                *over_limit(
                    "max_audio_seconds",
                    self.limits.max_audio_seconds,
                    f"the audio ({seconds:,.1f} s by its header)",
                    "seconds",
                )
            )

    def _write_decoded(self, value: str, target: Path) -> Path:
        try:
            data = decode_base64(value)
        except ValueError as exc:
            raise _NotDecoded(f"neither base64 nor a file the server may read ({self._not_a_file}): {exc}") from None
        if not data:
            raise _NotDecoded("empty file (the base64 decodes to 0 bytes)")
        self._check_bytes(len(data), "the decoded file")
        target.write_bytes(data)
        return target.resolve()

    def processor(self, modality: str, anchor: str) -> Processor:
        """The modality's fitted processor reading files anywhere under ``anchor`` (the file system root); the
        image processor's decompression-bomb guard set to ``max_image_pixels``."""
        key = (modality, anchor)
        if key not in self._processors:
            if modality == "image":
                processor = self.bundle.processor(modality, anchor, ".", {"max_pixels": self.limits.max_image_pixels})
                processor.pixel_setting = setting_name("max_image_pixels")
            else:
                processor = self.bundle.processor(modality, anchor, ".")
            self._processors[key] = processor
        return self._processors[key]


def row_batches(n_rows: int, batch_size: int) -> Iterator[range]:
    """Consecutive row ranges of at most ``batch_size`` rows."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    for start in range(0, n_rows, batch_size):
        yield range(start, min(start + batch_size, n_rows))
