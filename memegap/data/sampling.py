"""Samplers and loaders whose order depends only on (seed, epoch), so a resumed run sees the same batches,
and which deal that order out to the DDP ranks themselves."""

from __future__ import annotations

import math
from abc import ABCMeta, abstractmethod
from collections.abc import Iterator, Sequence, Sized

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler


def rank_and_world() -> tuple[int, int]:
    """This process's DDP rank and the number of ranks ((0, 1) outside torch.distributed)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class EpochSeeded(DistributedSampler, metaclass=ABCMeta):
    """The base of every sampler here: the draws of epoch k come from a generator seeded with seed + k
    only. Lightning calls `set_epoch` at the start of every epoch, so the order of epoch k is the same in
    an uninterrupted run and in one resumed from a checkpoint.

    Under DDP every rank draws the same order and takes positions rank, rank + W, ... of it, the order
    padded with its first items to a multiple of W (as DistributedSampler pads, so that every rank takes
    as many steps): the ranks' items are disjoint (but for those ≤ W − 1 padded ones) and together the
    whole split, and the ranks' batch j together are positions j·B·W … (j+1)·B·W − 1 of the order, what
    one process with batch B·W reads (the grouped sampler's whole groups included), which the
    contrastive loss's gathered features then see. It is a DistributedSampler so that Lightning keeps it
    as it is: Lightning's own wrapper would shuffle the order once more and break the groups up.
    Subclasses define `order()` (the epoch's whole order) and `total()` (its length)."""

    def __init__(self, seed: int = 0) -> None:  # DistributedSampler.__init__ is not called: ranks are read when iterating
        self.seed, self.epoch = seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def generator(self) -> torch.Generator:
        """A fresh generator for this epoch's draws."""
        return torch.Generator().manual_seed(self.seed + self.epoch)

    @abstractmethod
    def order(self) -> list:
        """The epoch's whole order (every rank draws the same)."""

    @abstractmethod
    def total(self) -> int:
        """The length of `order()`."""

    def __iter__(self) -> Iterator:
        rank, world = rank_and_world()
        order = self.order()
        if world == 1:
            return iter(order)
        padded = order + order[: math.ceil(len(order) / world) * world - len(order)]
        return iter(padded[rank::world])

    def __len__(self) -> int:
        return math.ceil(self.total() / rank_and_world()[1])


class EpochSeededSampler(EpochSeeded):
    """A random permutation of range(len(data)) drawn from seed + epoch.

    groups (one key per item, e.g. the base emoji) keeps the members of a group next to each other:
    the groups come in random order and each group's members in random order, so a batch holds whole
    groups and a contrastive loss must tell the members of a group apart (hard negatives).
    """

    def __init__(self, data: Sized, seed: int = 0, groups: Sequence[str] | None = None) -> None:
        super().__init__(seed)
        self.size = len(data)
        if groups is not None and len(groups) != self.size:
            raise ValueError(f"groups has {len(groups)} keys for {self.size} items")
        self.groups = groups

    def order(self) -> list:
        generator = self.generator()
        order = torch.randperm(self.size, generator=generator).tolist()
        if self.groups is None:
            return order
        members: dict[str, list[int]] = {}
        for index in order:  # members in random order, groups in the random order of their first member
            members.setdefault(self.groups[index], []).append(index)
        return [index for group in members.values() for index in group]

    def total(self) -> int:
        return self.size


class OnePerGroupSampler(EpochSeeded):
    """Per epoch, one item of each group, drawn from seed + epoch, the groups in random order (COCO
    training: one of an image's captions per epoch). groups: one key per item."""

    def __init__(self, groups: Sequence[int], seed: int = 0) -> None:
        self.members: dict[int, list[int]] = {}
        for index, group in enumerate(groups):
            self.members.setdefault(group, []).append(index)
        super().__init__(seed)

    def order(self) -> list:
        generator = self.generator()
        groups = list(self.members.values())
        choice = (torch.rand(len(groups), generator=generator) * torch.tensor([len(members) for members in groups])).long().tolist()
        return [groups[k][choice[k]] for k in torch.randperm(len(groups), generator=generator).tolist()]

    def total(self) -> int:
        return len(self.members)


class WeightedEpochSampler(EpochSeeded):
    """len(weights) draws with replacement, item i with probability weights[i] / Σ weights, from
    seed + epoch (a class-balanced sampler when weights are 1 / class count)."""

    def __init__(self, weights: torch.Tensor, seed: int = 0) -> None:
        super().__init__(seed)
        self.weights = weights.double()

    def order(self) -> list:
        return torch.multinomial(self.weights, len(self.weights), replacement=True, generator=self.generator()).tolist()

    def total(self) -> int:
        return len(self.weights)


class TripletSampler(EpochSeeded):
    """Every training meme once per epoch as an anchor, in a random order, with a positive and a
    negative drawn from seed + epoch (the thesis gives no rule; ours): the positive is another meme of
    the anchor's like bin; the negative a meme of a bin at least two bins away, or of the farthest bin
    when none is two away. A bin with one meme gives its anchor itself as positive."""

    def __init__(self, bins: torch.Tensor, seed: int = 0) -> None:
        super().__init__(seed)
        self.bins = bins
        self.members = {int(b): (bins == b).nonzero().flatten() for b in bins.unique()}

    def negative_bins(self, anchor_bin: int) -> list[int]:
        far = [b for b in self.members if abs(b - anchor_bin) >= 2]
        return far or [max(self.members, key=lambda b: abs(b - anchor_bin))]

    def order(self) -> list:
        generator, triplets = self.generator(), []
        for anchor in torch.randperm(len(self.bins), generator=generator).tolist():
            anchor_bin = int(self.bins[anchor])
            same = self.members[anchor_bin]
            others = same[same != anchor]
            positive = int(others[torch.randint(len(others), (1,), generator=generator)]) if len(others) else anchor
            candidates = torch.cat([self.members[b] for b in self.negative_bins(anchor_bin)])
            negative = int(candidates[torch.randint(len(candidates), (1,), generator=generator)])
            triplets.append((anchor, positive, negative))
        return triplets

    def total(self) -> int:
        return len(self.bins)


class PairSampler(EpochSeeded):
    """Every training meme once per epoch, in a random order, paired with a meme drawn uniformly from
    the others (from seed + epoch): the siamese regression's pairs."""

    def __init__(self, size: int, seed: int = 0) -> None:
        super().__init__(seed)
        self.size = size

    def order(self) -> list:
        generator = self.generator()
        firsts = torch.randperm(self.size, generator=generator)
        others = (firsts + torch.randint(1, self.size, (self.size,), generator=generator)) % self.size  # never itself
        return list(zip(firsts.tolist(), others.tolist()))

    def total(self) -> int:
        return self.size


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
