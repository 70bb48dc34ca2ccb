"""Where a run came from: the git commit and a content hash of the preprocessed data."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

from fusion.data.manifest import MODALITIES


def git_commit(cwd: str | Path = ".") -> tuple[str, bool]:
    """(commit sha, whether the work tree has uncommitted changes); ('unknown', False) outside git."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True).stdout
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown", False
    return sha.strip(), bool(status.strip())


# The small files that pin a processed modality folder's content: the shard index carries a hash of the
# chunk files (fusion.data.shards), the others the records, labels, rejections and processor settings.
FINGERPRINT_FILES = ("shards/index.json", "ids.json", "meta.json", "records.jsonl", "rejected.jsonl")


def data_version(processed_dir: str | Path) -> str:
    """Short content hash of the preprocessed data a run reads ('untracked' if there is none).

    Every modality folder under ``processed_dir`` counts, whichever modalities the run uses, so unimodal and
    multimodal runs on the same data share a version (the fusion-gain reference); the folder's location
    does not count, so a copy has the same version."""
    root = Path(processed_dir)
    digest, found = hashlib.sha256(), False
    for modality in MODALITIES:
        for name in FINGERPRINT_FILES:
            path = root / modality / name
            if path.is_file():
                found = True
                digest.update(f"{modality}/{name}\n".encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()[:12] if found else "untracked"
