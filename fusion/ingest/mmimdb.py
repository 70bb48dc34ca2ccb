"""MM-IMDb (Arevalo et al., 2017): movie posters and plots with multilabel genres, as released (mmimdb.tar.gz)."""

from __future__ import annotations

import argparse
import json

from fusion.ingest.formats import Format, fixed_task, require
from fusion.ingest.writer import IngestError, ManifestWriter

LAYOUT = """layout (the released archive, unpacked):
  mmimdb/
    split.json                {"train": [ids], "dev": [ids], "test": [ids]}
    dataset/<id>.json         {"genres": [...], "plot": ["...", ...], "title": ..., ...}
    dataset/<id>.jpeg         the poster

task=multilabel: the label is the genres list, the text the plot outlines joined (one record per id of
split.json; dev is the validation split). A movie without a poster is kept with the image missing; one without
genres, with an unreadable JSON file or without a plot and a poster is reported.

example:
  python -m fusion.ingest mmimdb /data/mmimdb
  uv run dvc exp run -S data.root=/data/mmimdb -S task=multilabel"""


def ingest(args: argparse.Namespace, writer: ManifestWriter) -> None:
    root = args.source
    try:
        splits = json.loads(require(root / "split.json", "MM-IMDb's split.json").read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise IngestError(f"{root / 'split.json'} is not JSON ({exc})") from None
    folder = require(root / "dataset", "MM-IMDb's dataset/ folder of <id>.json and <id>.jpeg")
    for split, ids in splits.items():
        for movie in ids:
            source = f"dataset/{movie}.json"
            try:
                meta = json.loads((folder / f"{movie}.json").read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                writer.reject(source, f"cannot read the movie's JSON file ({exc})", movie)
                continue
            genres = meta.get("genres") if isinstance(meta, dict) else None
            if not genres:
                writer.reject(source, "no genres", movie)
                continue
            plot = meta.get("plot")
            text = " ".join(plot) if isinstance(plot, list) else plot
            poster = folder / f"{movie}.jpeg"
            writer.add(
                source,
                id=movie,
                label=genres,
                split=split,
                text=text or None,
                image=str(poster) if poster.is_file() else None,
            )


FORMAT = Format(
    name="mmimdb",
    help="MM-IMDb: posters + plots, multilabel genres (split.json, dataset/)",
    layout=LAYOUT,
    source_help="the unpacked mmimdb folder (holding split.json)",
    ingest=ingest,
    task=fixed_task("multilabel"),
)
