"""Where a run came from: the git commit and the version of the preprocessed data (dvc.lock)."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import yaml

PREPROCESS_PREFIX = "preprocess_"


def git_commit(cwd: str | Path = ".") -> tuple[str, bool]:
    """(commit sha, whether the work tree has uncommitted changes); ('unknown', False) outside git."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True).stdout
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                                capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown", False
    return sha.strip(), bool(status.strip())


def data_version(lock_path: str | Path = "dvc.lock") -> str:
    """Short hash of the preprocess stages' output hashes in dvc.lock ('untracked' if none)."""
    path = Path(lock_path)
    if not path.is_file():
        return "untracked"
    stages = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("stages", {})
    hashes = sorted(f"{out['path']}:{out.get('md5', '')}" for name, stage in stages.items()
                    if name.startswith(PREPROCESS_PREFIX) for out in stage.get("outs", []))
    if not hashes:
        return "untracked"
    return hashlib.sha256("\n".join(hashes).encode()).hexdigest()[:12]
