"""CMU-MOSI (Zadeh et al., 2016) and CMU-MOSEI (Zadeh et al., 2018): sentiment in [-3, 3] (task=regression), in
the layouts they are published in: MOSI's raw release (segment transcripts and WAV files) and the aligned
feature pickles of MulT / MultiBench (GloVe, COVAREP, FACET sequences), for MOSI and MOSEI."""

from __future__ import annotations

import argparse
import csv
import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from fusion.ingest.formats import Format, fixed_task, require
from fusion.ingest.writer import IngestError, ManifestWriter, split_name

PICKLE_LAYOUT = """aligned pickle (MulT's mosi_data.pkl / mosei_senti_data.pkl, MultiBench's mosi_raw.pkl / mosei_raw.pkl):
  {"train" | "valid" | "test": {"text": [N, T, 300], "audio": [N, T, 74], "vision": [N, T, 35 or 47],
                                "labels": [N, 1, 1], "id": [N] or [N, k]}}
  Every record's sequences are written as precomputed-feature arrays under --output (default: a folder beside
  the pickle, named after it): text/<split>/<id>.npy, audio/<split>/<id>.npy and, for vision,
  image/<split>/<id>.npy, without the zero rows the aligned data is left-padded with. Only numpy arrays are unpickled (any other object in the file is
  refused, so loading it runs no code)."""  # noqa: E501 (help shown verbatim: RawDescriptionHelpFormatter)

MOSI_LAYOUT = f"""layouts:
raw release (CMU_MOSI_Raw/ or its Raw/ folder):
  Labels/OpinionLevelSentiment.csv          start,end,video_id,segment,sentiment (no header)
  Transcript/Segmented/<video>.annotprocessed   lines '<segment>_DELIM_<text>'
  Audio/WAV_16000/Segmented/<video>_<segment>.wav
  One record per labelled segment, id '<video>_<segment>': inline text, the WAV file. Without --folds every
  record gets the pipeline's seeded split; give the standard folds (CMU-MultimodalSDK's cmu_mosi_std_folds) as
  --folds folds.json {{"train": [video ids], "valid": [...], "test": [...]}} to split by speaker video.

{PICKLE_LAYOUT}

examples:
  python -m fusion.ingest mosi /data/CMU_MOSI_Raw --folds mosi_folds.json
  python -m fusion.ingest mosi /data/mosi_data.pkl --output /data/mosi-features
  uv run dvc exp run -S data.root=/data/CMU_MOSI_Raw -S task=regression"""

MOSEI_LAYOUT = f"""layout:
{PICKLE_LAYOUT}
  MOSEI's raw release keeps its labels in CMU_MOSEI_Labels.csd, an HDF5 file (h5py is no dependency): use the
  aligned pickle.

example:
  python -m fusion.ingest mosei /data/mosei_senti_data.pkl --output /data/mosei
  uv run dvc exp run -S data.root=/data/mosei -S task=regression"""

# The pickle's modality keys and the manifest key their arrays go to (vision is the image modality's input).
PICKLE_MODALITIES = {"text": "text_path", "audio": "audio", "vision": "image"}
MANIFEST_FOLDER = {"text_path": "text", "audio": "audio", "image": "image"}
# What a pickle may contain: numpy arrays (and their dtypes and scalars); anything else is refused.
SAFE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
    ("collections", "OrderedDict"),
}


class ArraysOnlyUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists and numpy arrays only: a pickle naming any other callable is refused."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in SAFE_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}: only numpy arrays are expected")


def load_pickle(path: Path) -> dict:
    try:
        with path.open("rb") as stream:
            data = ArraysOnlyUnpickler(stream, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
        raise IngestError(f"{path}: not an aligned-feature pickle ({exc})") from None
    if not isinstance(data, dict) or not any(split_name(k) for k in data):
        raise IngestError(
            f"{path}: expected a dict of train / valid / test splits, got "
            f"{type(data).__name__} with keys {list(data)[:5] if isinstance(data, dict) else '-'}"
        )
    return data


def _record_id(raw: Any, split: str, index: int) -> str:
    values = raw.reshape(-1).tolist() if isinstance(raw, np.ndarray) else [raw]
    text = "_".join(v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in values)
    text = "".join(c if c.isalnum() or c in "-_[]." else "_" for c in text).strip("_")
    return text or f"{split}{index:05d}"


def _trim(sequence: np.ndarray) -> np.ndarray:
    """Drop the all-zero rows the aligned data is left-padded with."""
    if sequence.ndim != 2:
        return sequence
    nonzero = np.flatnonzero(np.abs(sequence).sum(axis=1) > 0)
    return sequence[nonzero[0] :] if nonzero.size else sequence[:0]


def ingest_pickle(path: Path, writer: ManifestWriter) -> None:
    for split, part in load_pickle(path).items():
        if not isinstance(part, dict) or "labels" not in part:
            writer.reject(f"{path.name}[{split}]", "split without a 'labels' array")
            continue
        labels = np.asarray(part["labels"])
        ids = part.get("id")
        for index in range(len(labels)):
            source = f"{path.name}[{split}][{index}]"
            record_id = _record_id(ids[index] if ids is not None and index < len(ids) else None, split, index)
            label = np.asarray(labels[index], dtype=np.float64).reshape(-1)
            if label.size != 1:
                writer.reject(
                    source, f"label has shape {np.shape(labels[index])}, expected one sentiment score", record_id
                )
                continue
            fields: dict[str, Any] = {"id": record_id, "label": float(label[0]), "split": split}
            for modality, key in PICKLE_MODALITIES.items():
                if modality in part and index < len(part[modality]):
                    sequence = _trim(np.asarray(part[modality][index], dtype=np.float32))
                    if sequence.size:
                        fields[key] = writer.write_npy(
                            f"{MANIFEST_FOLDER[key]}/{split_name(split) or split}/{record_id}.npy", sequence
                        )
            writer.add(source, **fields)


def _raw_root(source: Path) -> Path:
    for root in (source, source / "Raw"):
        if (root / "Labels" / "OpinionLevelSentiment.csv").is_file():
            return root
    raise IngestError(f"{source}: neither MOSI's raw release (Labels/OpinionLevelSentiment.csv) nor a .pkl file")


def _transcripts(path: Path) -> dict[str, str]:
    """segment number -> text of a .annotprocessed file ('<segment>_DELIM_<text>' lines)."""
    segments = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        number, sep, text = line.partition("_DELIM_")
        if sep:
            segments[number.strip()] = text.strip()
    return segments


def ingest_mosi_raw(source: Path, writer: ManifestWriter, folds: dict[str, str]) -> None:
    root = _raw_root(source)
    labels = root / "Labels" / "OpinionLevelSentiment.csv"
    transcripts: dict[str, dict[str, str]] = {}
    with labels.open(encoding="utf-8-sig", newline="") as stream:
        for number, row in enumerate(csv.reader(stream), start=1):
            where = f"{labels.name}:{number}"
            if len(row) < 5:
                writer.reject(where, f"expected start,end,video_id,segment,sentiment, got {len(row)} field(s)")
                continue
            video, segment = row[2].strip(), row[3].strip()
            record_id = f"{video}_{segment}"
            try:
                score = float(row[4])
            except ValueError:
                writer.reject(where, f"sentiment {row[4]!r} is not a number", record_id)
                continue
            if video not in transcripts:
                path = root / "Transcript" / "Segmented" / f"{video}.annotprocessed"
                transcripts[video] = _transcripts(path) if path.is_file() else {}
            wav = root / "Audio" / "WAV_16000" / "Segmented" / f"{record_id}.wav"
            text = transcripts[video].get(segment)
            if text is None and not wav.is_file():
                writer.reject(where, "neither a transcript line nor a WAV file for the segment", record_id)
                continue
            writer.add(
                where,
                id=record_id,
                label=score,
                split=folds.get(video),
                text=text or None,
                audio=str(wav) if wav.is_file() else None,
            )


def _folds(path: Path | None) -> dict[str, str]:
    """video id -> split from a folds JSON {split: [video ids]}."""
    if path is None:
        return {}
    try:
        folds = json.loads(require(path, "the folds file").read_text(encoding="utf-8"))
        return {video: split_name(split) or split for split, videos in folds.items() for video in videos}
    except (ValueError, AttributeError, TypeError) as exc:
        raise IngestError(f"{path}: expected {{split: [video ids]}} ({exc})") from None


def add_mosi_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--folds",
        type=Path,
        default=None,
        help="JSON {split: [video ids]} for the raw release (default: the pipeline's seeded split)",
    )


def ingest_mosi(args: argparse.Namespace, writer: ManifestWriter) -> None:
    if args.source.suffix == ".pkl":
        ingest_pickle(args.source, writer)
    else:
        ingest_mosi_raw(args.source, writer, _folds(args.folds))


def ingest_mosei(args: argparse.Namespace, writer: ManifestWriter) -> None:
    if args.source.suffix != ".pkl":
        raise IngestError(
            f"{args.source}: give MOSEI's aligned pickle (e.g. mosei_senti_data.pkl); the raw release's "
            f"labels are in CMU_MOSEI_Labels.csd, an HDF5 file this reader does not open"
        )
    ingest_pickle(args.source, writer)


def pickle_output(source: Path) -> Path:
    """A pickle's arrays need a folder to be written to: beside the pickle, named after it."""
    return source.with_suffix("") if source.suffix == ".pkl" else source


MOSI = Format(
    name="mosi",
    help="CMU-MOSI: raw release (transcripts + WAV) or aligned feature pickle, sentiment regression",
    layout=MOSI_LAYOUT,
    source_help="CMU_MOSI_Raw folder, or a .pkl of aligned features",
    ingest=ingest_mosi,
    add_arguments=add_mosi_arguments,
    task=fixed_task("regression"),
    default_output=pickle_output,
    output_default="the raw folder; for a .pkl, a folder beside it named after it",
)
MOSEI = Format(
    name="mosei",
    help="CMU-MOSEI: aligned feature pickle, sentiment regression",
    layout=MOSEI_LAYOUT,
    source_help="a .pkl of aligned features (mosei_senti_data.pkl, mosei_raw.pkl)",
    ingest=ingest_mosei,
    task=fixed_task("regression"),
    default_output=pickle_output,
    output_default="a folder beside the pickle, named after it",
)
