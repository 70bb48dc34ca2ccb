"""Hateful Memes (Kiela et al., 2020): meme images with their overlaid text, binary hateful / not hateful."""

from __future__ import annotations

import argparse

from fusion.ingest.formats import Format
from fusion.ingest.table import read_rows
from fusion.ingest.writer import IngestError, ManifestWriter

LAYOUT = """layout (the released data folder):
  hateful_memes/
    img/<id>.png
    train.jsonl               {"id": 42953, "img": "img/42953.png", "label": 0, "text": "..."}
    dev.jsonl                 or dev_seen.jsonl / dev_unseen.jsonl (phase 2)
    test.jsonl                or test_seen.jsonl / test_unseen.jsonl

Labels 0 / 1 become the classes not_hateful / hateful. train.jsonl is the training split, the dev file the
validation split, the test file the test split; --phase picks the seen (default) or unseen dev and test files of
phase 2 where they exist. Lines without a label (the unlabelled test file of phase 1) are reported.

example:
  python -m fusion.ingest hateful_memes /data/hateful_memes"""

CLASSES = {0: "not_hateful", 1: "hateful"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--phase",
        choices=["seen", "unseen"],
        default="seen",
        help="which phase-2 dev/test files to use where they exist (default: seen)",
    )


def ingest(args: argparse.Namespace, writer: ManifestWriter) -> None:
    root = args.source
    files = {
        "train": ["train.jsonl"],
        "val": [f"dev_{args.phase}.jsonl", "dev.jsonl"],
        "test": [f"test_{args.phase}.jsonl", "test.jsonl"],
    }
    found = {split: next((root / n for n in names if (root / n).is_file()), None) for split, names in files.items()}
    if found["train"] is None:
        raise IngestError(f"{root / 'train.jsonl'} not found: give the Hateful Memes data folder (img/, *.jsonl)")
    for split, path in found.items():
        if path is None:
            continue
        for number, row in read_rows(path, None):
            source = f"{path.name}:{number}"
            if isinstance(row, str):
                writer.reject(source, row)
                continue
            label = row.get("label")
            if label not in CLASSES:
                writer.reject(
                    source,
                    f"label {label!r} is not 0 or 1"
                    if label is not None
                    else "no label (the unlabelled test file of the challenge)",
                    row.get("id"),
                )
                continue
            image = row.get("img")
            writer.add(
                source,
                id=row.get("id"),
                label=CLASSES[label],
                split=split,
                text=row.get("text") or None,
                image=str(root / image) if isinstance(image, str) and image else None,
            )


FORMAT = Format(
    name="hateful_memes",
    help="Hateful Memes: img/ + train/dev/test jsonl, binary hateful label",
    layout=LAYOUT,
    source_help="the data folder holding img/ and the jsonl files",
    ingest=ingest,
    add_arguments=add_arguments,
)
