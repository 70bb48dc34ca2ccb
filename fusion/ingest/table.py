"""A CSV, TSV or JSONL table with one row per record, and a mapping of its columns to manifest keys."""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path
from typing import Any, Iterator

from fusion.ingest.formats import Format, label_name, source_folder
from fusion.ingest.writer import IngestError, ManifestWriter

KEYS = ("id", "label", "split", "text", "text_path", "image", "audio")
FILE_COLUMNS = ("text_path", "image", "audio")

LAYOUT = """layout: one row per record, e.g. captions.csv
  file_name,caption,class,fold
  img/001.jpg,a dog on a beach,dog,train
  img/002.jpg,,cat,test                 <- an empty cell is a missing modality

mapping: KEY=COLUMN for the manifest keys id, label, split, text (inline text), text_path (a text file), image,
audio; label is required. Without id= the row number is the id. File paths are relative to --files-root (default:
the table's folder) or absolute; they must lie inside --output. .tsv is tab-separated, .jsonl one JSON object a
line (nested lists allowed for multilabel labels).

examples:
  python -m fusion.ingest table data/captions.csv label=class text=caption image=file_name split=fold
  python -m fusion.ingest table meta.tsv --task multilabel --label-sep ';' id=key label=tags audio=clip
  python -m fusion.ingest table scores.jsonl --task regression label=score text=transcript audio=wav"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("mapping", nargs="+", metavar="KEY=COLUMN", help=f"column mapping; keys: {', '.join(KEYS)}")
    parser.add_argument(
        "--task",
        choices=["multiclass", "multilabel", "regression"],
        default="multiclass",
        help="what the label column holds (default: multiclass, one class name)",
    )
    parser.add_argument("--label-sep", default="|", help="separator of a multilabel cell (default '|')")
    parser.add_argument("--delimiter", default=None, help="CSV delimiter (default: ',' for .csv, tab for .tsv)")
    parser.add_argument(
        "--files-root",
        type=Path,
        default=None,
        help="folder relative paths in the table start from (default: the table's folder)",
    )


def parse_mapping(items: list[str]) -> dict[str, str]:
    mapping = {}
    for item in items:
        key, sep, column = item.partition("=")
        if not sep or key not in KEYS or not column:
            raise IngestError(f"bad mapping {item!r}: use KEY=COLUMN with KEY one of {', '.join(KEYS)}")
        mapping[key] = column
    if "label" not in mapping:
        raise IngestError("the mapping needs label=<column>")
    return mapping


def read_rows(path: Path, delimiter: str | None) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """(line number, row as a dict) per row; a row that cannot be read is (line, reason)."""
    if path.suffix.lower() == ".jsonl":
        with path.open(encoding="utf-8-sig") as stream:
            for number, line in enumerate(stream, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    yield number, f"malformed JSON ({exc.msg} at column {exc.colno})"
                    continue
                yield number, row if isinstance(row, dict) else f"expected a JSON object, got {type(row).__name__}"
        return
    delimiter = delimiter or ("\t" if path.suffix.lower() == ".tsv" else ",")
    with path.open(encoding="utf-8-sig", newline="") as stream:
        reader = csv.DictReader(stream, delimiter=delimiter)
        header = reader.fieldnames or []
        for row in reader:
            if None in row or None in row.values():
                yield reader.line_num, f"row does not have the header's {len(header)} fields"
                continue
            yield reader.line_num, row


def _label(value: Any, task: str, sep: str) -> Any:
    if task == "multilabel":
        if isinstance(value, str):
            return [name.strip() for name in value.split(sep) if name.strip()]
        return value
    if task == "regression":
        try:
            return float(value) if isinstance(value, str) else value
        except ValueError:
            return value  # reported by the contract check ("label must be a number")
    return label_name(value)


def ingest(args: argparse.Namespace, writer: ManifestWriter) -> None:
    mapping = parse_mapping(args.mapping)
    files_root = (args.files_root or source_folder(args.source)).resolve()
    checked = False
    for number, row in read_rows(args.source, args.delimiter):
        source = f"{args.source.name}:{number}"
        if isinstance(row, str):
            writer.reject(source, row)
            continue
        if not checked:  # a mapped column absent from the header is a mapping error, not a bad row
            missing = [column for column in mapping.values() if column not in row]
            if missing and args.source.suffix.lower() != ".jsonl":
                raise IngestError(f"column(s) {', '.join(missing)} not in {args.source} (columns: {', '.join(row)})")
            checked = True
        fields = {key: _cell(row.get(column)) for key, column in mapping.items()}
        fields["id"] = fields.get("id") if "id" in mapping else f"row{number}"
        fields["label"] = _label(fields["label"], args.task, args.label_sep)
        for key in FILE_COLUMNS:
            if isinstance(fields.get(key), str):
                fields[key] = str(files_root / fields[key])
        writer.add(source, **fields)


def _cell(value: Any) -> Any:
    """An empty cell is a missing value."""
    if isinstance(value, str):
        value = value.strip()
        return value or None
    return value


FORMAT = Format(
    name="table",
    help="a CSV / TSV / JSONL table with a column mapping (id=, label=, text=, image=, ...)",
    layout=LAYOUT,
    source_help="the table file (.csv, .tsv or .jsonl)",
    ingest=ingest,
    add_arguments=add_arguments,
    task=lambda args: args.task,
    output_default="the table's folder",
)
