"""A Hugging Face `datasets` dataset saved with `save_to_disk` (a Dataset or a DatasetDict of splits)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from fusion.ingest.formats import Format, label_name
from fusion.ingest.table import parse_mapping
from fusion.ingest.writer import IngestError, ManifestWriter, split_name

LAYOUT = """layout: the folder `Dataset.save_to_disk` / `DatasetDict.save_to_disk` wrote (dataset_dict.json, one folder
per split with state.json and .arrow files). Splits named train / validation / test (also dev, valid) become the
manifest's splits; a plain Dataset is left unsplit.

mapping (KEY=COLUMN, all optional): label= defaults to a column named label or labels; id= to a column named id
(else '<split>-<row>'); image= and audio= to the first Image / Audio feature; text= to a string column named text,
sentence, caption or content. The label feature sets the task: ClassLabel -> multiclass (its names), a list of
ClassLabel -> multilabel, a float -> regression (--task overrides). Image and Audio features are written as files
(their original bytes) under --output: image/<split>/<id>.<ext>, audio/<split>/<id>.<ext>; a string column given
as image= or audio= is a path relative to the source folder. Needs the `ingest` extra (uv sync --extra ingest).

examples:
  python -m fusion.ingest hf /data/saved_ds --output /data/ds-fusion
  python -m fusion.ingest hf /data/saved_ds --output /data/ds-fusion text=tweet label=sentiment image=photo"""

TEXT_NAMES = ("text", "sentence", "caption", "content")
AUDIO_MAGIC = {b"RIFF": ".wav", b"fLaC": ".flac", b"OggS": ".ogg", b"FORM": ".aiff"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("mapping", nargs="*", metavar="KEY=COLUMN", help="column mapping (see above)")
    parser.add_argument(
        "--task",
        choices=["multiclass", "multilabel", "regression"],
        default=None,
        help="what the label holds (default: from the label feature)",
    )


def load(args: argparse.Namespace) -> dict[str | None, Any]:
    """{split name or None: Dataset}, loaded once per run (memory-mapped arrow files)."""
    if getattr(args, "_splits", None) is None:
        try:
            import datasets
        except ImportError:
            raise IngestError(
                "the `datasets` package is not installed: uv sync --extra ingest (or pip install 'fusion[ingest]')"
            ) from None
        try:
            loaded = datasets.load_from_disk(str(args.source))
        except (FileNotFoundError, ValueError) as exc:
            raise IngestError(f"{args.source} is not a dataset saved with save_to_disk ({exc})") from None
        args._splits = dict(loaded) if isinstance(loaded, datasets.DatasetDict) else {None: loaded}
    return args._splits


def columns(args: argparse.Namespace) -> dict[str, str]:
    """The mapping: given, else guessed from column names and feature types."""
    import datasets

    features = next(iter(load(args).values())).features
    given = parse_mapping(
        [
            *args.mapping,
            *(
                []
                if any(m.startswith("label=") for m in args.mapping)
                else [f"label={_first(features, ('label', 'labels'))}"]
            ),
        ]
    )
    kinds = {"image": datasets.Image, "audio": datasets.Audio}
    for key, kind in kinds.items():
        if key not in given:
            found = next((name for name, feature in features.items() if isinstance(feature, kind)), None)
            if found:
                given[key] = found
    if "text" not in given and "text_path" not in given:
        found = next((n for n in TEXT_NAMES if n in features and _is_string(features[n])), None)
        if found:
            given["text"] = found
    if "id" not in given and "id" in features:
        given["id"] = "id"
    missing = [column for column in given.values() if column not in features]
    if missing:
        raise IngestError(f"column(s) {', '.join(missing)} not in the dataset (columns: {', '.join(features)})")
    return given


def _first(features: Any, names: tuple[str, ...]) -> str:
    found = next((n for n in names if n in features), None)
    if found is None:
        raise IngestError(
            f"no label column named {' or '.join(names)}; give label=<column> (columns: {', '.join(features)})"
        )
    return found


def _is_string(feature: Any) -> bool:
    return getattr(feature, "dtype", None) in ("string", "large_string")


def task(args: argparse.Namespace) -> str:
    if args.task:
        return args.task
    import datasets

    feature = next(iter(load(args).values())).features[columns(args)["label"]]
    inner = getattr(feature, "feature", None)
    if isinstance(inner, datasets.ClassLabel) or (inner is not None and _is_string(inner)):
        return "multilabel"
    if getattr(feature, "dtype", "").startswith("float"):
        return "regression"
    return "multiclass"


def ingest(args: argparse.Namespace, writer: ManifestWriter) -> None:
    import datasets

    mapping = columns(args)
    folder = args.source.resolve()
    for split, dataset in load(args).items():
        features = dataset.features
        for key in ("image", "audio"):  # the original file bytes, not decoded pixels or samples
            feature = features[mapping[key]] if key in mapping else None
            if isinstance(feature, (datasets.Image, datasets.Audio)):
                dataset = dataset.cast_column(mapping[key], type(feature)(decode=False))
        labels = features[mapping["label"]]
        for index, row in enumerate(dataset):
            source = f"{split or 'dataset'}[{index}]"
            record_id = str(row[mapping["id"]]) if "id" in mapping else f"{split or 'row'}-{index}"
            fields: dict[str, Any] = {
                "id": record_id,
                "split": split_name(split) or split if split else None,
                "label": _label(labels, row[mapping["label"]], writer.task),
            }
            try:
                for key in ("text", "text_path"):
                    if key in mapping:
                        fields[key] = row[mapping[key]]
                for key in ("image", "audio"):
                    if key in mapping:
                        fields[key] = _media(writer, key, split, record_id, row[mapping[key]], folder)
            except ValueError as exc:
                writer.reject(source, str(exc), record_id)
                continue
            writer.add(source, **fields)


def _label(feature: Any, value: Any, task_name: str) -> Any:
    """Class indices as class names (ClassLabel), lists as lists; None (a missing label) stays for the report."""
    import datasets

    names = feature if isinstance(feature, datasets.ClassLabel) else getattr(feature, "feature", None)
    if isinstance(names, datasets.ClassLabel):

        def name(v: Any) -> Any:  # -1 is how datasets marks a missing ClassLabel
            return None if v == -1 else names.int2str(v) if isinstance(v, int) and 0 <= v < names.num_classes else v

        value = [name(v) for v in value] if isinstance(value, list) else name(value)
    if task_name == "multiclass":
        return label_name(value)
    if task_name == "multilabel" and isinstance(value, list):
        return [label_name(v) for v in value]
    return value


def _media(writer: ManifestWriter, key: str, split: str | None, record_id: str, value: Any, folder: Path) -> str | None:
    """A media cell as a file under the output folder: embedded bytes written out, a path resolved."""
    if value is None:
        return None
    if isinstance(value, str):
        return str(folder / value)
    data, path = value.get("bytes"), value.get("path")
    if data is None:
        if not path:
            return None
        return str(Path(path) if Path(path).is_absolute() else folder / path)
    suffix = Path(path).suffix.lower() if path else _sniff(key, data)
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in record_id)
    return writer.write_bytes(f"{key}/{split or 'all'}/{safe}{suffix}", data)


def _sniff(key: str, data: bytes) -> str:
    if key == "audio":
        return AUDIO_MAGIC.get(data[:4], ".wav")
    import io

    from PIL import Image, UnidentifiedImageError

    try:
        return "." + (Image.open(io.BytesIO(data)).format or "png").lower().replace("jpeg", "jpg")
    except (UnidentifiedImageError, OSError):
        raise ValueError(f"{key} bytes are no image Pillow recognises") from None


FORMAT = Format(
    name="hf",
    help="a Hugging Face datasets folder written by save_to_disk",
    layout=LAYOUT,
    source_help="the folder save_to_disk wrote",
    ingest=ingest,
    add_arguments=add_arguments,
    task=task,
)
