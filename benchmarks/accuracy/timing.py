"""Wall-clock and CPU time of a block: this process (the in-process baselines) and its finished children (the
project's train.py subprocesses and the loader workers they reap)."""

from __future__ import annotations

import resource
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator


@dataclass
class Timing:
    """Seconds spent in a block: wall clock, CPU (user + system) of this process and of its reaped children."""

    wall: float = 0.0
    cpu_self: float = 0.0
    cpu_children: float = 0.0

    @property
    def cpu(self) -> float:
        return self.cpu_self + self.cpu_children


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


@contextmanager
def timed() -> Iterator[Timing]:
    """`with timed() as t: ...`; t is filled in when the block ends (also when it raises)."""
    timing = Timing()
    wall, own, children = time.perf_counter(), _cpu(resource.RUSAGE_SELF), _cpu(resource.RUSAGE_CHILDREN)
    try:
        yield timing
    finally:
        timing.wall = time.perf_counter() - wall
        timing.cpu_self = _cpu(resource.RUSAGE_SELF) - own
        timing.cpu_children = _cpu(resource.RUSAGE_CHILDREN) - children
