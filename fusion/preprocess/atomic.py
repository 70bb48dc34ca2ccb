"""Atomic stage outputs: a stage builds its output in a work folder of its own beside it and swaps it in
by renames, so a run killed at any moment never leaves a folder that looks complete.

The work folder is named after the run's process id (``.<name>.tmp-<pid>``): worker processes orphaned by
a killed run can only write into their own run's folder, never into a later run's. Each run first removes
the work folders of runs that are no longer alive.
"""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

WORK_KINDS = ("tmp", "old")  # the folder being built, and the previous output while it is replaced


def work_path(out_dir: Path, kind: str, pid: int | None = None) -> Path:
    """The work folder of `kind` of the run with process id `pid` (this run by default)."""
    return out_dir.with_name(f".{out_dir.name}.{kind}-{os.getpid() if pid is None else pid}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale(out_dir: Path) -> list[Path]:
    """Remove the work folders that runs no longer alive left beside `out_dir`; returns them."""
    removed = []
    for kind in WORK_KINDS:
        prefix = f".{out_dir.name}.{kind}"
        for path in out_dir.parent.glob(f"{prefix}*"):
            pid = path.name[len(prefix) + 1 :]
            if not pid.isdigit() or (int(pid) != os.getpid() and not _alive(int(pid))):
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
    return removed


def swap_in(work_dir: Path, out_dir: Path) -> None:
    """Replace out_dir by work_dir with two renames: a kill between them leaves no out_dir at all (the
    previous one waits in ``.<name>.old-<pid>`` until the next run removes it), never a partial one."""
    old = work_path(out_dir, "old")
    shutil.rmtree(old, ignore_errors=True)
    if out_dir.exists():
        out_dir.rename(old)
    work_dir.rename(out_dir)
    shutil.rmtree(old, ignore_errors=True)


@contextmanager
def atomic_output(out_dir: Path) -> Iterator[Path]:
    """Yield an empty work folder for this run; on success it becomes `out_dir`, on any error (or
    exception raised on purpose, e.g. a strict-mode failure) it is removed and `out_dir` is left as it was."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(out_dir)
    work_dir = work_path(out_dir, "tmp")
    shutil.rmtree(work_dir, ignore_errors=True)
    work_dir.mkdir()
    try:
        yield work_dir
    except BaseException:
        shutil.rmtree(work_dir, ignore_errors=True)
        raise
    swap_in(work_dir, out_dir)
