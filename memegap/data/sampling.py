"""Samplers and loaders whose order depends only on (seed, epoch), so a resumed run sees the same batches."""

from __future__ import annotations

from collections.abc import Iterator, Sequence, Sized

import torch
from torch.utils.data import DataLoader, Dataset, Sampler


class EpochSeededSampler(Sampler[int]):
    """A random permutation of range(len(data)) drawn from seed + epoch.

    Lightning calls `set_epoch` at the start of every epoch (as for DistributedSampler), so the order of
    epoch k is the same in an uninterrupted run and in one resumed from a checkpoint.

    groups (one key per item, e.g. the base emoji) keeps the members of a group next to each other:
    the groups come in random order and each group's members in random order, so a batch holds whole
    groups and a contrastive loss must tell the members of a group apart (hard negatives).
    """

    def __init__(self, data: Sized, seed: int = 0, groups: Sequence[str] | None = None) -> None:
        self.size = len(data)
        self.seed = seed
        self.epoch = 0
        if groups is not None and len(groups) != self.size:
            raise ValueError(f"groups has {len(groups)} keys for {self.size} items")
        self.groups = groups

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(self.size, generator=generator).tolist()
        if self.groups is None:
            return iter(order)
        members: dict[str, list[int]] = {}
        for index in order:  # members in random order, groups in the random order of their first member
            members.setdefault(self.groups[index], []).append(index)
        return iter([index for group in members.values() for index in group])

    def __len__(self) -> int:
        return self.size


class OnePerGroupSampler(Sampler[int]):
    """Per epoch, one item of each group, drawn from seed + epoch, the groups in random order (COCO
    training: one of an image's captions per epoch). groups: one key per item."""

    def __init__(self, groups: Sequence[int], seed: int = 0) -> None:
        self.members: dict[int, list[int]] = {}
        for index, group in enumerate(groups):
            self.members.setdefault(group, []).append(index)
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        groups = list(self.members.values())
        choice = (torch.rand(len(groups), generator=generator) * torch.tensor([len(members) for members in groups])).long().tolist()
        return iter([groups[k][choice[k]] for k in torch.randperm(len(groups), generator=generator).tolist()])

    def __len__(self) -> int:
        return len(self.members)


class WeightedEpochSampler(Sampler[int]):
    """len(weights) draws with replacement, item i with probability weights[i] / Σ weights, from
    seed + epoch (a class-balanced sampler when weights are 1 / class count)."""

    def __init__(self, weights: torch.Tensor, seed: int = 0) -> None:
        self.weights, self.seed, self.epoch = weights.double(), seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(torch.multinomial(self.weights, len(self.weights), replacement=True, generator=generator).tolist())

    def __len__(self) -> int:
        return len(self.weights)


def make_loader(
    dataset: Dataset,
    batch_size: int,
    num_workers: int,
    shuffle: bool,
    seed: int,
    groups: Sequence[str] | None = None,
    sample_weights: torch.Tensor | None = None,
    sampler: Sampler | None = None,
) -> DataLoader:
    """A DataLoader that never draws from the global RNG (its own generator, an epoch-seeded sampler).

    groups: see EpochSeededSampler; sample_weights: draw with replacement by these weights instead
    (WeightedEpochSampler). Both only when shuffling. sampler: one of the caller's own (it must draw
    from seed + epoch too), used as given.
    """
    if shuffle and sampler is None:
        sampler = WeightedEpochSampler(sample_weights, seed) if sample_weights is not None else EpochSeededSampler(dataset, seed, groups)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        generator=torch.Generator().manual_seed(seed),
    )


class SplitLoaders:
    """train/val/test_dataloader of a data module that defines `_loader(split) -> DataLoader`."""

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")
