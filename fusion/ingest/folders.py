"""A class-folder tree (ImageFolder style): `<class>/<name>.<ext>`, files of one record paired by name across
modalities (`dog/001.jpg`, `dog/001.wav`, `dog/001.txt`), optionally under split folders."""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

from fusion.ingest.formats import EXTENSIONS, Format
from fusion.ingest.writer import IngestError, ManifestWriter, split_name

LAYOUT = """layout:
  pets/                       or with split folders:   pets/train/dog/001.jpg
    dog/001.jpg                                        pets/val/cat/007.wav
    dog/001.wav               <- same name: one record with image and audio
    dog/001.txt               <- UTF-8 text (.txt)
    dog/002.jpg               <- image only
    cat/sub/003.png           <- deeper folders are part of the name: id cat/sub/003

The class is the first folder (below train/val/test folders when every top folder is a split name: also valid,
validation, dev); files of the same class whose paths differ only in the extension form one record, id
'<class>/<path without extension>'.
Extensions: images .png .jpg .jpeg .bmp .gif .webp .tif .tiff, audio .wav .flac .ogg .aiff, text .txt. Other
files, files directly in the root and two files of one modality with the same name are reported.

example:
  python -m fusion.ingest folders /data/pets"""


def modality_of(path: Path) -> str | None:
    suffix = path.suffix.lower()
    return next((m for m, extensions in EXTENSIONS.items() if suffix in extensions), None)


def ingest(args: argparse.Namespace, writer: ManifestWriter) -> None:
    root = args.source
    if not root.is_dir():
        raise IngestError(f"{root} is not a folder; give the root of the class folders")
    skip = {writer.out_dir / name for name in ("manifest.jsonl", "manifest.rejected.jsonl")}
    top = {child.name for child in root.iterdir() if child.is_dir() and not child.name.startswith(".")}
    by_split = bool(top) and all(split_name(name) for name in top)  # every top folder is a split: split layout
    groups: dict[tuple[str | None, str, str], dict[str, list[Path]]] = defaultdict(lambda: defaultdict(list))
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")):
        if path.resolve() in skip:
            continue
        parts = path.relative_to(root).parts
        split = split_name(parts[0]) if by_split and len(parts) > 1 else None
        parts = parts[1:] if by_split else parts
        modality = modality_of(path)
        if len(parts) < 2:
            writer.reject(str(path.relative_to(root)), "file is not inside a class folder")
        elif modality is None:
            writer.reject(
                str(path.relative_to(root)), f"extension '{path.suffix}' is no known image, audio or text extension"
            )
        else:
            stem = str(Path(*parts[1:]).with_suffix("").as_posix())
            groups[(split, parts[0], stem)][modality].append(path)
    for (split, label, stem), files in groups.items():
        source = str(Path(*(s for s in (split, label, stem) if s)))
        doubles = {m: paths for m, paths in files.items() if len(paths) > 1}
        if doubles:
            modality, paths = next(iter(doubles.items()))
            writer.reject(
                source,
                f"{len(paths)} {modality} files share the name: {', '.join(p.name for p in paths)}; rename all but one",
                f"{label}/{stem}",
            )
            continue
        writer.add(
            source,
            id=f"{label}/{stem}",
            label=label,
            split=split,
            text_path=_one(files, "text"),
            image=_one(files, "image"),
            audio=_one(files, "audio"),
        )


def _one(files: dict[str, list[Path]], modality: str) -> str | None:
    return str(files[modality][0]) if modality in files else None


FORMAT = Format(
    name="folders",
    help="a class-folder tree <class>/<name>.<ext>, files paired by name across modalities",
    layout=LAYOUT,
    source_help="the root of the class folders",
    ingest=ingest,
)
