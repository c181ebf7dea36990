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


POOL_MODES = ("random", "batches")
POOL_KEY = {"random": "pool", "batches": "batch"}  # the key suffix of each pool mode, before the pool size


def pools(n: int, pool_size: int | None = None, pool_seed: int = 0, repeats: int = 1, mode: str = "random") -> list[Tensor]:
    """Row indices of each candidate pool for N pairs: one pool of all rows when pool_size is None; else,
    mode="random": `repeats` fixed random permutations (seeds pool_seed, pool_seed + 1, ...), each cut
    into pools of pool_size; mode="batches": consecutive rows in their evaluation order (the thesis's
    pools were its evaluation batches of 90). A remainder smaller than pool_size is left out."""
    if mode not in POOL_MODES:
        raise ValueError(f"pool mode must be one of {POOL_MODES}, got {mode!r}")
    size = n if pool_size is None else pool_size
    if size < 1 or n < size:
        raise ValueError(f"need at least one pool of {size} pairs, got {n} pairs")
    if pool_size is None:
        return [torch.arange(n)]
    if mode == "batches":
        return [torch.arange(start, start + size) for start in range(0, n - size + 1, size)]
    orders = [torch.randperm(n, generator=torch.Generator().manual_seed(pool_seed + repeat)) for repeat in range(repeats)]
    return [order[start : start + size] for order in orders for start in range(0, n - size + 1, size)]


def recall_at_k(
    image: Tensor,
    text: Tensor,
    ks: tuple[int, ...] = DEFAULT_KS,
    pool_size: int | None = None,
    pool_seed: int = 0,
    pool_repeats: int = 1,
    pool_mode: str = "random",
) -> dict[str, float]:
    """image→text and text→image R@k, mean rank and median rank (1 = the match ranked first) for paired
    rows of `image` and `text` (N×d each).

    pool_size=None ranks every candidate of the split. With pool_size=P the pairs are shuffled by a fixed
    permutation (pool_seed), so that neighbouring rows (e.g. variants of one emoji) do not fill a pool,
    and cut into pools of P pairs (a remainder smaller than P is left out, since a smaller pool is
    easier); each query is ranked against its own pool only, and chance R@1 is 1/P. pool_repeats > 1
    averages over that many fixed permutations, so that the score depends less on which pairs share a
    pool or fall in the remainder. pool_mode="batches" pools consecutive rows instead (no shuffle).
    Keys: `<direction>_R@k`, `<direction>_mean_rank`, `<direction>_median_rank` for direction
    image_to_text and text_to_image, with a `_pool<P>` suffix (random pools) or `_batch<P>` (batches).
    """
    if image.shape != text.shape:
        raise ValueError(f"paired embeddings must have the same shape, got {tuple(image.shape)} and {tuple(text.shape)}")
    if not (torch.isfinite(image).all() and torch.isfinite(text).all()):
        # NaN compares false, so every rank would be 0 and R@k a perfect 1.0: refuse instead.
        raise ValueError("embeddings hold NaN or inf values (a diverged model, or broken weights or inputs): no R@k")
    ranks = {"image_to_text": [], "text_to_image": []}
    for pool in pools(image.shape[0], pool_size, pool_seed, pool_repeats, pool_mode):
        ranks["image_to_text"].append(_ranks_of_matches(image[pool], text[pool]))
        ranks["text_to_image"].append(_ranks_of_matches(text[pool], image[pool]))
    suffix = "" if pool_size is None else f"_{POOL_KEY[pool_mode]}{pool_size}"
    metrics = {}
    for direction, direction_ranks in ranks.items():
        positions = torch.cat(direction_ranks).double() + 1.0  # 1 = first
        metrics |= {f"{direction}_R@{k}{suffix}": float((positions <= k).double().mean()) for k in ks}
        metrics[f"{direction}_mean_rank{suffix}"] = float(positions.mean())
        metrics[f"{direction}_median_rank{suffix}"] = float(positions.quantile(0.5))  # the mean of the two middle ranks for even counts
    return metrics
