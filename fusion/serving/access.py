"""Which files a request may make the served model read: regular files inside ``serving.allowed_roots``, nothing else.

A request value in the ``image`` or ``audio`` column may name a file on the server. Anyone who can reach the
endpoint sends these values, so a path is used only when it resolves (symlinks followed) to a readable regular
file inside one of the allowed folders. Every other path (outside them, a symlink leaving them, a device, a FIFO,
a folder, a missing or unreadable file) gets the same answer, ``None``, so the reply to a request cannot tell
which files exist."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from fusion.serving.settings import ROOTS, SettingsError, setting_name

# A value longer than this cannot be a path (Linux PATH_MAX): base64 is never parsed as one (that costs ~4 ms).
MAX_PATH_CHARS = 4096
# Opening the file proves it readable; O_NONBLOCK keeps a FIFO swapped in after the check from blocking the open.
OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


@dataclass(frozen=True)
class AllowedFile:
    """A file a request may read: its resolved path and its size in bytes."""

    path: Path
    size: int


class AllowedRoots:
    """The folders of ``serving.allowed_roots``, resolved once (relative ones against the server's working folder)."""

    def __init__(self, roots: Sequence[str]):
        self.roots: tuple[Path, ...] = tuple(_folder(root) for root in roots)

    def __bool__(self) -> bool:
        return bool(self.roots)

    def file(self, value: str) -> AllowedFile | None:
        """The regular file ``value`` names inside an allowed folder, or None for anything else (the same None
        whatever the reason, so that no answer depends on what exists outside the folders)."""
        if not self.roots or len(value) > MAX_PATH_CHARS or "\0" in value:
            return None
        try:
            resolved = Path(value).resolve(strict=True)
            if not any(resolved.is_relative_to(root) for root in self.roots):
                return None
            descriptor = os.open(resolved, OPEN_FLAGS)
            try:
                info = os.fstat(descriptor)
            finally:
                os.close(descriptor)
        except (OSError, ValueError, RuntimeError):  # missing, unreadable, a symlink loop, a name too long, ...
            return None
        return AllowedFile(resolved, info.st_size) if stat.S_ISREG(info.st_mode) else None


def _folder(root: str) -> Path:
    path = Path(root).expanduser()
    try:
        resolved = path.resolve(strict=True)
    except (OSError, RuntimeError):
        resolved = None
    if resolved is None or not resolved.is_dir():
        raise SettingsError(
            f"{setting_name(ROOTS)}: {root!r} is not a folder on this machine (resolved against "
            f"{Path.cwd()}); list existing folders, or [] to refuse every path in a request"
        )
    return resolved
