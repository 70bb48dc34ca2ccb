"""`python -m fusion.ingest <format> SOURCE [options]`: write manifest.jsonl for a dataset in a known layout."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from fusion.ingest import avmnist, cmu, folders, hateful_memes, hf, mmimdb, table
from fusion.ingest.formats import Format
from fusion.ingest.writer import IngestError, ManifestWriter, format_report

FORMATS: tuple[Format, ...] = (
    table.FORMAT,
    folders.FORMAT,
    hf.FORMAT,
    mmimdb.FORMAT,
    hateful_memes.FORMAT,
    avmnist.FORMAT,
    cmu.MOSI,
    cmu.MOSEI,
)

DESCRIPTION = """Write a dataset's manifest.jsonl (the pipeline's data contract, docs/data-contract.md) from the
layout it already has. Nothing is downloaded or moved: the manifest points at the files where they are (formats
whose source holds arrays or embedded files write those as files under --output). Rows that cannot be mapped are
listed with their reason in manifest.rejected.jsonl beside the manifest; they never stop the run."""

EPILOG = """examples:
  python -m fusion.ingest table captions.csv id=file label=class text=caption image=file_name
  python -m fusion.ingest folders /data/pets                      # <class>/<stem>.{jpg,wav,txt}
  python -m fusion.ingest hf /data/saved --output /data/pets-fusion text=sentence label=label
  python -m fusion.ingest mmimdb /data/mmimdb
  python -m fusion.ingest hateful_memes /data/hateful_memes
  python -m fusion.ingest avmnist /data/avmnist
  python -m fusion.ingest mosi /data/CMU_MOSI_Raw
  python -m fusion.ingest mosei /data/mosei_senti_data.pkl --output /data/mosei
  python -m fusion.ingest <format> --help                         # the layout it expects, and its options

then: uv run dvc exp run -S data.root=<output> [-S task=multilabel|regression]  (the command is printed)"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m fusion.ingest",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(
        dest="format",
        required=True,
        metavar="FORMAT",
        title="formats (python -m fusion.ingest FORMAT --help for its layout)",
    )
    for fmt in FORMATS:
        p = sub.add_parser(
            fmt.name,
            help=fmt.help,
            description=f"{fmt.help}\n\n{fmt.layout}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        p.add_argument("source", type=Path, help=fmt.source_help)
        p.add_argument(
            "--output",
            type=Path,
            default=None,
            help="dataset folder to write manifest.jsonl (and any generated files) to; it must hold every "
            "file the manifest names. Default: " + fmt.output_default,
        )
        fmt.add_arguments(p)
        p.set_defaults(fmt=fmt)
    return parser


def main(argv: Sequence[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    fmt: Format = args.fmt
    try:
        if not args.source.exists():
            raise IngestError(f"{args.source} does not exist")
        output = args.output or fmt.default_output(args.source)
        writer = ManifestWriter(output, task=fmt.task(args))
        fmt.ingest(args, writer)
        summary = writer.close()
    except IngestError as exc:
        sys.exit(f"error: {fmt.name}: {exc}")
    print(format_report(summary))
    return summary


if __name__ == "__main__":
    main()
