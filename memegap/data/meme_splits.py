"""The splits of the memes thesis's table: random (a seeded shuffle), chronological (oldest first) or by
group, where a group is a template (the table's template_url) or a cluster of near-identical pictures
found by perceptual hash (imagehash + faiss). Split fractions and cutting are memegap.data.splits's."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from torch import Tensor

from memegap.data.memes_table import Meme
from memegap.data.splits import cut_in_order, hash_position, split_groups

SPLIT_KINDS = ("random", "chronological", "group")


def perceptual_groups(images: Sequence[Tensor], max_distance: int) -> list[str]:
    """Groups of near-identical pictures: images (uint8 3×S×S each) whose 64-bit perceptual hashes
    (imagehash.phash) differ in at most `max_distance` bits are linked, and the links' connected
    components are the groups (faiss's binary range search finds the links)."""
    import faiss
    import imagehash
    from PIL import Image

    hashes = np.stack([np.packbits(imagehash.phash(Image.fromarray(image.permute(1, 2, 0).numpy())).hash.flatten()) for image in images])
    index = faiss.IndexBinaryFlat(64)
    index.add(hashes)
    limits, _, neighbours = index.range_search(hashes, max_distance + 1)  # distance < radius
    parent = list(range(len(images)))

    def root(item: int) -> int:
        while parent[item] != item:
            parent[item] = parent[parent[item]]
            item = parent[item]
        return item

    for query in range(len(images)):
        for other in neighbours[limits[query] : limits[query + 1]]:
            parent[root(int(other))] = root(query)
    return [f"phash-{root(item)}" for item in range(len(images))]


def split_memes(memes: list[Meme], kind: str, fractions: tuple[float, float, float], seed: int, groups: list[str] | None = None) -> list[str]:
    """The split of each meme: random (a seeded shuffle), chronological (oldest first) or group
    (every meme of a group in one split)."""
    n = len(memes)
    if kind == "group":
        return split_groups(groups, fractions)
    if kind == "random":
        order = sorted(range(n), key=lambda k: hash_position(f"{seed}:{memes[k].id}"))
    else:
        order = sorted(range(n), key=lambda k: (memes[k].created_at, memes[k].id))
    split_of = [""] * n
    cut_in_order(order, fractions, split_of)
    return split_of
