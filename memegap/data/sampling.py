"""Samplers and loaders whose order depends only on (seed, epoch), so a resumed run sees the same batches."""

from __future__ import annotations

from collections.abc import Iterator, Sized

import torch
from torch.utils.data import DataLoader, Dataset, Sampler


class EpochSeededSampler(Sampler[int]):
    """A random permutation of range(len(data)) drawn from seed + epoch.

    Lightning calls `set_epoch` at the start of every epoch (as for DistributedSampler), so the order of
    epoch k is the same in an uninterrupted run and in one resumed from a checkpoint.
    """

    def __init__(self, data: Sized, seed: int = 0) -> None:
        self.size = len(data)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(torch.randperm(self.size, generator=generator).tolist())

    def __len__(self) -> int:
        return self.size


def make_loader(dataset: Dataset, batch_size: int, num_workers: int, shuffle: bool, seed: int) -> DataLoader:
    """A DataLoader that never draws from the global RNG (its own generator, an epoch-seeded sampler)."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=EpochSeededSampler(dataset, seed) if shuffle else None,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        generator=torch.Generator().manual_seed(seed),
    )
