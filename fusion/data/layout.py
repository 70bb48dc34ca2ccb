"""Which folder of a dataset holds each modality's files, read from the manifest itself.

DVC tracks each modality's folder as a dependency of that modality's stage (`data.dirs.<modality>`), so a
folder that does not exist (texts all inline, no audio at all) would stop `dvc repro` before any stage
runs. The default of `data.dirs.<modality>` is therefore the resolver `${fusion.files_dir:<modality>}`,
evaluated when conf/ is composed (`make params`, `dvc exp run`, `train.py`): the deepest folder holding
every file the manifest names for the modality, or the manifest itself when it names none. An explicit
`data.dirs.<modality>=...` replaces it.
"""

from __future__ import annotations

import json
import posixpath
from pathlib import Path
from typing import Any, Iterable

from omegaconf import OmegaConf

from fusion.data.manifest import FILE_KEYS

RESOLVER = "fusion.files_dir"


def named_files(lines: Iterable[str], modality: str) -> Iterable[str]:
    """The relative paths the manifest lines name for `modality` (malformed lines and values are skipped:
    the stages reject them with their reason)."""
    key = FILE_KEYS[modality]
    for line in lines:
        if f'"{key}"' not in line:  # most lines of a big manifest are skipped unparsed
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            continue
        value = obj.get(key) if isinstance(obj, dict) else None
        if isinstance(value, str) and value:
            yield value


def common_folder(paths: Iterable[str]) -> str | None:
    """The deepest folder holding every path ('.' for the dataset folder itself); None without paths.
    Absolute and escaping paths are left out: the stages reject those records anyway."""
    folders = set()
    for path in paths:
        norm = posixpath.normpath(path.replace("\\", "/"))
        if posixpath.isabs(norm) or norm == ".." or norm.startswith("../"):
            continue
        folders.add(posixpath.dirname(norm))
    if not folders:
        return None
    common = posixpath.commonpath(sorted(folders))
    return common or "."


def files_dir(root: str | Path, manifest: str, modality: str) -> str:
    """The folder (relative to `root`) that holds every file the manifest names for `modality`; the
    manifest's own name when it names none (inline text, modality absent), so a DVC dependency on
    `<root>/<result>` always exists. Without a readable manifest (a dataset not generated yet), the
    conventional folder, named after the modality."""
    path = Path(root) / manifest
    try:
        with path.open(encoding="utf-8-sig") as stream:
            folder = common_folder(named_files(stream, modality))
    except (OSError, UnicodeDecodeError):
        return modality
    return manifest if folder is None else folder


def missing_dirs(root: str | Path, manifest: str, dirs: dict[str, str]) -> list[str]:
    """One message per `data.dirs` entry naming a folder that does not exist in a dataset that does (DVC would
    stop on it with only 'No such file or directory'), with the fix."""
    root = Path(root)
    if not (root / manifest).is_file():
        return []
    return [
        f"data.dirs.{modality}={folder!r}: {root / folder} does not exist; the manifest names its "
        f"{modality} files under {files_dir(root, manifest, modality)!r} (drop the override to follow "
        f"the manifest, or name the folder that holds them)"
        for modality, folder in dirs.items()
        if not (root / folder).exists()
    ]


def _files_dir_resolver(modality: str, *, _root_: Any) -> str:
    return files_dir(str(_root_.data.root), str(_root_.data.manifest), modality)


def register_resolvers() -> None:
    """Make `${fusion.files_dir:<modality>}` known to OmegaConf (idempotent)."""
    if not OmegaConf.has_resolver(RESOLVER):
        OmegaConf.register_new_resolver(RESOLVER, _files_dir_resolver)
