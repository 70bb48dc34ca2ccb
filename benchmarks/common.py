"""Shared by every section: the run context, terminal vs log output, timing helpers and short error texts."""

from __future__ import annotations

import os
import statistics
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from omegaconf import DictConfig

from benchmarks.tables import Table


class Console:
    """The terminal, kept open on a duplicate of stdout so progress lines still show while library output
    (litdata workers, Lightning, compiler warnings) goes to the log file."""

    def __init__(self) -> None:
        sys.stdout.flush()
        self.stream = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1, encoding="utf-8")

    def print(self, text: str = "") -> None:
        print(text, file=self.stream, flush=True)

    def progress(self, section: str, text: str) -> None:
        """One progress line, e.g. "[training] late fp32 eager: 184 samples/s (23 s)"."""
        self.print(f"[{section}] {text}")


@contextmanager
def output_to(log_path: Path) -> Iterator[None]:
    """Send stdout and stderr of this process and of the processes it starts (file descriptors 1 and 2) to
    `log_path` (appended) for the duration of the block."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log_path, "a", encoding="utf-8") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


@dataclass
class Context:
    """What a section gets: its settings, the device, the shared dataset workspace, the console and log."""

    settings: DictConfig
    device: torch.device
    workspace: Any  # benchmarks.workspace.Workspace (not imported here: the attention subprocess stays light)
    console: Console
    log_path: Path
    machine: dict[str, Any] = field(default_factory=dict)

    @property
    def quiet(self):
        """Context manager: library output of the block goes to the log file."""
        return output_to(self.log_path)


@dataclass
class SectionResult:
    """A section's figures (for the JSON) and its tables (for the terminal and Markdown)."""

    figures: dict[str, Any]
    tables: list[Table]


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work so a timer measures it (no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(fn: Callable[[], Any], repeats: int, device: torch.device) -> list[float]:
    """Seconds of each of `repeats` calls of fn (callers warm up first)."""
    seconds = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        seconds.append(time.perf_counter() - start)
    return seconds


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def short_error(exc: BaseException, limit: int) -> str:
    """The exception's type and first line, at most `limit` characters: a table cell, not a traceback."""
    lines = str(exc).strip().splitlines()
    text = f"{type(exc).__name__}: {lines[0] if lines else ''}".rstrip(": ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def failed(reason: str) -> str:
    """The table cell and JSON value of a measurement that raised."""
    return f"failed: {reason}"
