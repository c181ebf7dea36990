"""Cross-modal retrieval recall (R@k) for paired embeddings, as in open_clip's zero-shot metrics."""

from __future__ import annotations

import torch
from torch import Tensor

DEFAULT_KS = (1, 5, 10)


def _ranks_of_matches(queries: Tensor, candidates: Tensor) -> Tensor:
    """Rank (0 = first) of candidate i for query i under cosine similarity, for each i. Both N×d.

    Ties count in favour of the match: the rank is the number of candidates scoring strictly higher.
    """
    q = torch.nn.functional.normalize(queries.detach().float(), dim=1)
    c = torch.nn.functional.normalize(candidates.detach().float(), dim=1)
    scores = q @ c.T
    matched = scores.diagonal().unsqueeze(1)
    return (scores > matched).sum(1)


def pools(n: int, pool_size: int | None = None, pool_seed: int = 0, repeats: int = 1) -> list[Tensor]:
    """Row indices of each candidate pool for N pairs: one pool of all rows when pool_size is None; else
    `repeats` fixed random permutations (seeds pool_seed, pool_seed + 1, ...), each cut into pools of
    pool_size with its remainder left out."""
    size = n if pool_size is None else pool_size
    if size < 1 or n < size:
        raise ValueError(f"need at least one pool of {size} pairs, got {n} pairs")
    if pool_size is None:
        return [torch.arange(n)]
    orders = [torch.randperm(n, generator=torch.Generator().manual_seed(pool_seed + repeat)) for repeat in range(repeats)]
    return [order[start : start + size] for order in orders for start in range(0, n - size + 1, size)]


def recall_at_k(
    image: Tensor,
    text: Tensor,
    ks: tuple[int, ...] = DEFAULT_KS,
    pool_size: int | None = None,
    pool_seed: int = 0,
    pool_repeats: int = 1,
) -> dict[str, float]:
    """image→text and text→image R@k for paired rows of `image` and `text` (N×d each).

    pool_size=None ranks every candidate of the split. With pool_size=P the pairs are shuffled by a fixed
    permutation (pool_seed), so that neighbouring rows (e.g. variants of one emoji) do not fill a pool,
    and cut into pools of P pairs (a remainder smaller than P is left out, since a smaller pool is
    easier); each query is ranked against its own pool only, and chance R@1 is 1/P. pool_repeats > 1
    averages over that many fixed permutations, so that the score depends less on which pairs share a
    pool or fall in the remainder.
    Keys: `image_to_text_R@k`, `text_to_image_R@k`, with a `_pool<P>` suffix when pooled.
    """
    if image.shape != text.shape:
        raise ValueError(f"paired embeddings must have the same shape, got {tuple(image.shape)} and {tuple(text.shape)}")
    if not (torch.isfinite(image).all() and torch.isfinite(text).all()):
        # NaN compares false, so every rank would be 0 and R@k a perfect 1.0: refuse instead.
        raise ValueError("embeddings hold NaN or inf values (a diverged model, or broken weights or inputs): no R@k")
    ranks = {"image_to_text": [], "text_to_image": []}
    for pool in pools(image.shape[0], pool_size, pool_seed, pool_repeats):
        ranks["image_to_text"].append(_ranks_of_matches(image[pool], text[pool]))
        ranks["text_to_image"].append(_ranks_of_matches(text[pool], image[pool]))
    suffix = "" if pool_size is None else f"_pool{pool_size}"
    return {
        f"{direction}_R@{k}{suffix}": float((torch.cat(direction_ranks) < k).double().mean())
        for direction, direction_ranks in ranks.items()
        for k in ks
    }
