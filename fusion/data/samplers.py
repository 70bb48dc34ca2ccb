"""Evaluation sampling across processes: every sample exactly once, so distributed metrics equal one process's."""

from __future__ import annotations

from typing import Iterator

import torch.distributed as dist
from torch.utils.data import Dataset, DistributedSampler


class UnpaddedDistributedSampler(DistributedSampler):
    """Rank r of w takes samples r, r+w, r+2w, ... in order, without the padding DistributedSampler adds to even
    out the ranks (it repeats samples, which skews validation and test metrics). Ranks may get one batch
    fewer; metrics are torchmetrics states summed across ranks, so they need no equal batch counts."""

    def __init__(self, dataset: Dataset, num_replicas: int | None = None, rank: int | None = None):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False, drop_last=False)
        self.num_samples = len(range(self.rank, len(dataset), self.num_replicas))
        self.total_size = len(dataset)

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.total_size, self.num_replicas))

    def __len__(self) -> int:
        return self.num_samples


def distributed_world() -> int:
    """Number of processes of the initialised process group (1 outside distributed training)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
