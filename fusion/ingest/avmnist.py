"""AV-MNIST (Vielzeuf et al., 2018), the npy release MultiBench reads: MNIST digits (28 × 28, PCA-noised) paired
with spoken-digit spectrograms (112 × 112)."""

from __future__ import annotations

import argparse

import numpy as np

from fusion.ingest.formats import Format, label_name, require
from fusion.ingest.writer import IngestError, ManifestWriter

LAYOUT = """layout (the avmnist folder of the release):
  avmnist/
    image/train_data.npy      [60000, 784] pixel values 0-255
    image/test_data.npy       [10000, 784]
    audio/train_data.npy      [60000, 112, 112] spectrograms
    audio/test_data.npy       [10000, 112, 112]
    train_labels.npy          [60000] digits 0-9
    test_labels.npy           [10000]

Each row becomes a record: the digit image as a PNG (images/<split>/<id>.png) and the spectrogram as a
precomputed-feature array (spectrograms/<split>/<id>.npy, [112, 112]: 112 steps of 112 features), both written
under --output. As in MultiBench, the last 5000 of the 60000 training rows (1/12) are the validation split.
Rows with a wrong shape or non-finite values are reported.

example:
  python -m fusion.ingest avmnist /data/avmnist"""

IMAGE_SIDE = 28
VAL_SHARE = 5000 / 60000  # MultiBench's validation rows (the end of the training arrays)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--val-share",
        type=float,
        default=VAL_SHARE,
        help="share of the training rows, taken from the end, that form the validation split "
        "(default 1/12: MultiBench's 5000 of 60000)",
    )


def _load(path) -> np.ndarray:
    try:
        return np.load(require(path, "part of the AV-MNIST npy release"), mmap_mode="r", allow_pickle=False)
    except ValueError as exc:
        raise IngestError(f"{path} is not a plain .npy array ({exc})") from None


def ingest(args: argparse.Namespace, writer: ManifestWriter) -> None:
    root = args.source
    for part in ("train", "test"):
        images, audio = _load(root / "image" / f"{part}_data.npy"), _load(root / "audio" / f"{part}_data.npy")
        labels = _load(root / f"{part}_labels.npy")
        if not len(images) == len(audio) == len(labels):
            raise IngestError(
                f"{part}: {len(images)} images, {len(audio)} spectrograms and {len(labels)} labels; "
                f"the three arrays must have one row per record"
            )
        first_val = len(labels) - round(len(labels) * args.val_share) if part == "train" else len(labels)
        for index in range(len(labels)):
            split = "val" if index >= first_val else part
            record_id = f"{part}{index:05d}"
            source = f"{part}[{index}]"
            pixels = np.asarray(images[index], dtype=np.float64).reshape(-1)
            spectrogram = np.asarray(audio[index], dtype=np.float32)
            if pixels.size != IMAGE_SIDE * IMAGE_SIDE or spectrogram.ndim not in (1, 2):
                writer.reject(
                    source,
                    f"image has {pixels.size} values (expected {IMAGE_SIDE * IMAGE_SIDE}) or the "
                    f"spectrogram shape {spectrogram.shape} is not [T, F]",
                    record_id,
                )
                continue
            if not (np.isfinite(pixels).all() and np.isfinite(spectrogram).all()):
                writer.reject(source, "non-finite values (NaN or Inf) in the image or the spectrogram", record_id)
                continue
            image = writer.write_png(
                f"images/{split}/{record_id}.png",
                np.clip(pixels, 0, 255).round().astype(np.uint8).reshape(IMAGE_SIDE, IMAGE_SIDE),
            )
            feature = writer.write_npy(f"spectrograms/{split}/{record_id}.npy", spectrogram)
            writer.add(
                source, id=record_id, label=label_name(labels[index].item()), split=split, image=image, audio=feature
            )


FORMAT = Format(
    name="avmnist",
    help="AV-MNIST, the npy release: digit images + spoken-digit spectrograms",
    layout=LAYOUT,
    source_help="the avmnist folder (image/, audio/, *_labels.npy)",
    ingest=ingest,
    add_arguments=add_arguments,
)
