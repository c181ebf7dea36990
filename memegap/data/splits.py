"""Fixed train/val/test splits that keep a group of related items (the variants of one emoji, the
pictograms of one concept) in one split, and mini splits for tests. Every data source shares these."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence

SPLITS = ("train", "val", "test")
GOLDEN_RATIO_CONJUGATE = (5**0.5 - 1) / 2


def hash_position(key: str) -> float:
    """A fixed position in [0, 1) for a key (a group, or a file name), independent of any seed."""
    return int(hashlib.sha1(key.encode("utf-8")).hexdigest()[:8], 16) / 16**8


def split_at(position: float, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)) -> str:
    """'train', 'val' or 'test' for a position in [0, 1): the split whose cumulative fraction first exceeds it."""
    cumulative = 0.0
    for split, fraction in zip(SPLITS, fractions):
        cumulative += fraction
        if position < cumulative:
            return split
    return SPLITS[-1]


def split_groups(groups: Sequence[str], fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)) -> list[str]:
    """The split of each item, by its group: every item of a group lands in one split.

    The groups are sorted by size, then by hash; the i-th group goes to the split at position
    frac(i · 0.618…) (a golden-ratio sequence, evenly spread over any stretch of the list), so groups of
    every size are divided in the given fractions and the splits hold the same mix of sizes.
    """
    size = Counter(groups)
    ordered = sorted(size, key=lambda group: (size[group], hash_position(group)))
    split_of_group = {group: split_at(index * GOLDEN_RATIO_CONJUGATE % 1.0, fractions) for index, group in enumerate(ordered)}
    return [split_of_group[group] for group in groups]


def evenly_spaced(items: list, limit: int | None) -> list:
    """At most `limit` items spread evenly over the list (all when limit is None): a mini split that
    samples the whole list rather than its first block."""
    if limit is None or len(items) <= limit:
        return items
    return [items[index * len(items) // limit] for index in range(limit)]


def stratified_split(labels: Sequence[int], fractions: tuple[float, ...] = (0.8, 0.1, 0.1), seed: int = 0) -> list[str]:
    """The split of each item, stratified by label: within each class, a fixed shuffle (from `seed`)
    cut at the cumulative fractions, rounded, so every split holds each class in the given proportion
    (within one item). Fractions: train, val, test (a fraction may be 0)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    split_of_item = [""] * len(labels)
    members: dict[int, list[int]] = {}
    for index, label in enumerate(labels):
        members.setdefault(label, []).append(index)
    for label in sorted(members):
        indices = members[label]
        cut_in_order([indices[k] for k in torch.randperm(len(indices), generator=generator).tolist()], fractions, split_of_item)
    return split_of_item


def cut_in_order(order: Sequence[int], fractions: Sequence[float], split_of_item: list[str]) -> None:
    """Give the items of `order` (indices) their split: its first round(n · f_train) items train, the
    next ones val up to round(n · (f_train + f_val)), the rest test; written into split_of_item."""
    start = 0
    for k, split in enumerate(SPLITS[: len(fractions)]):
        stop = round(len(order) * sum(fractions[: k + 1]))
        for index in order[start:stop]:
            split_of_item[index] = split
        start = stop
