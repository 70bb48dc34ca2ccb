"""What an ingest format module provides, and the helpers several formats share."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from fusion.ingest.writer import IngestError, ManifestWriter

# File extensions that name each modality's files (lower case); `.npy`/`.npz` hold precomputed features.
EXTENSIONS = {
    "image": {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"},
    "audio": {".wav", ".flac", ".ogg", ".aiff", ".aif"},
    "text": {".txt"},
}


def source_folder(source: Path) -> Path:
    """The folder a source names: itself, or the folder of a source file."""
    return source if source.is_dir() else source.parent


def _fixed(task: str) -> Callable[[argparse.Namespace], str]:
    return lambda args: task


def _no_arguments(parser: argparse.ArgumentParser) -> None:
    return None


@dataclass(frozen=True)
class Format:
    """One source layout: its CLI help and the function that maps it through a ManifestWriter."""

    name: str
    help: str
    layout: str
    source_help: str
    ingest: Callable[[argparse.Namespace, ManifestWriter], None]
    add_arguments: Callable[[argparse.ArgumentParser], None] = _no_arguments
    task: Callable[[argparse.Namespace], str] = field(default=_fixed("multiclass"))
    output_default: str = "the source folder (a source file's folder)"
    default_output: Callable[[Path], Path] = source_folder


def fixed_task(task: str) -> Callable[[argparse.Namespace], str]:
    """A format whose task is given by the dataset (MM-IMDb: multilabel, CMU-MOSI: regression)."""
    return _fixed(task)


def require(path: Path, what: str) -> Path:
    """A file or folder the layout must have, or an IngestError naming it."""
    if not path.exists():
        raise IngestError(f"{path} not found: {what}")
    return path


def label_name(value: Any) -> Any:
    """A class label as the manifest wants it, a string (0 and 0.0 -> '0'); anything else unchanged, for the
    contract check to report."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, np.integer)) or (isinstance(value, (float, np.floating)) and float(value).is_integer()):
        return str(int(value))
    return value
