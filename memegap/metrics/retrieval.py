"""Cross-modal retrieval recall (R@k) for paired embeddings, as in open_clip's zero-shot metrics."""

from __future__ import annotations

import torch
from torch import Tensor

DEFAULT_KS = (1, 5, 10)


RANK_BLOCK = 4096  # text rows scored at a time: memory stays O(block × images), not O(texts × images)


def _ranks(images: Tensor, texts: Tensor, owner: Tensor) -> tuple[Tensor, Tensor]:
    """Ranks (0 = first) under cosine similarity of M images (M×d) and T texts (T×d), text t describing
    image owner[t] (T, int64 in [0, M)); every image has at least one text.

    text→image: for each text, the images scoring strictly higher than its own image.
    image→text: for each image, the texts of other images scoring strictly higher than its best-scoring
    own text (a hit when any of its texts is retrieved: the COCO convention; with one text per image,
    simply the rank of that text). Ties count in favour of the match. Returns (image_to_text M, text_to_image T).
    """
    images = torch.nn.functional.normalize(images.detach().float(), dim=1)
    texts = torch.nn.functional.normalize(texts.detach().float(), dim=1)
    blocks = [slice(start, start + RANK_BLOCK) for start in range(0, len(texts), RANK_BLOCK)]
    # Each match's own score is read from the same product as the scores it is compared with, so
    # rounding can never rank a match below itself; hence two passes over the blocks.
    best_own = torch.full((len(images),), -torch.inf, device=images.device)
    text_to_image = []
    for rows in blocks:
        scores = texts[rows] @ images.T  # block × M
        own = scores.gather(1, owner[rows, None])
        text_to_image.append((scores > own).sum(1))
        best_own.scatter_reduce_(0, owner[rows], own.squeeze(1), "amax")
    image_to_text = torch.zeros(len(images), dtype=torch.long, device=images.device)
    for rows in blocks:
        image_to_text += (texts[rows] @ images.T > best_own[None, :]).sum(0)  # own texts never beat the best own one
    return image_to_text, torch.cat(text_to_image)


POOL_BLOCK = 128  # pools scored at a time by _pooled_ranks: memory O(block × pool_size × d); 128 measured fastest here (512: 2× slower)


def _pooled_ranks(images: Tensor, texts: Tensor, pool_index: Tensor) -> tuple[Tensor, Tensor]:
    """_ranks in each of B pools of P pairs at once, for one text per image: texts[i] describes images[i]
    (N×d each); pool_index (B×P) holds each pool's rows. Returns (image_to_text, text_to_image), B·P each,
    pool by pool, as _ranks over the pools one by one would (the own score is the product's diagonal)."""
    images = torch.nn.functional.normalize(images.detach().float(), dim=1)
    texts = torch.nn.functional.normalize(texts.detach().float(), dim=1)
    image_to_text, text_to_image = [], []
    for start in range(0, len(pool_index), POOL_BLOCK):
        rows = pool_index[start : start + POOL_BLOCK]
        scores = texts[rows] @ images[rows].transpose(1, 2)  # block × P texts × P images
        own = scores.diagonal(dim1=1, dim2=2)  # block × P
        text_to_image.append((scores > own[:, :, None]).sum(2).flatten())
        image_to_text.append((scores > own[:, None, :]).sum(1).flatten())
    return torch.cat(image_to_text), torch.cat(text_to_image)


def _pool_rows(candidate_pools: list[Tensor], owner: Tensor, image_count: int):
    """For each pool of images (indices into image_count images): (the pool, the text rows of its images,
    each such row's image as a position in the pool). owner (T): each text row's image. The rows are sorted
    by image once, so each pool costs O(its rows), not O(T)."""
    by_image = torch.argsort(owner, stable=True)  # text rows, grouped by image
    counts = torch.bincount(owner, minlength=image_count)
    offsets = counts.cumsum(0) - counts  # where each image's rows start in by_image
    for pool in candidate_pools:
        pool = pool.to(owner.device)
        lengths = counts[pool]
        local_owner = torch.repeat_interleave(torch.arange(len(pool), device=owner.device), lengths)
        within = torch.arange(len(local_owner), device=owner.device) - (lengths.cumsum(0) - lengths)[local_owner]
        yield pool, by_image[offsets[pool][local_owner] + within], local_owner


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


def images_of_rows(image_of_row: Tensor) -> tuple[Tensor, Tensor]:
    """For rows keyed by their image (N): (the first row of each image, M, in order of first appearance;
    each row's image as an index into those, N)."""
    position: dict[int, int] = {}  # image key -> its index
    first_rows, owner = [], []
    for row, key in enumerate(image_of_row.tolist()):
        if key not in position:
            position[key] = len(first_rows)
            first_rows.append(row)
        owner.append(position[key])
    return torch.tensor(first_rows, dtype=torch.long), torch.tensor(owner, dtype=torch.long)


def first_rows(image_of_row: Tensor | None, count: int) -> Tensor:
    """The first row of each image (images_of_rows), or every one of `count` rows when there are no image keys
    (one text per image)."""
    return images_of_rows(image_of_row)[0] if image_of_row is not None else torch.arange(count)


def each_image_once(embeddings: dict[str, Tensor], image_of_row: Tensor | None) -> dict[str, Tensor]:
    """Paired rows ({modality: N×d}) with each image once, with its first caption (COCO's five captions an image);
    as they are without image keys."""
    if image_of_row is None:
        return embeddings
    rows = images_of_rows(image_of_row)[0]
    return {name: value[rows.to(value.device)] for name, value in embeddings.items()}


def recall_at_k(
    image: Tensor,
    text: Tensor,
    ks: tuple[int, ...] = DEFAULT_KS,
    pool_size: int | None = None,
    pool_seed: int = 0,
    pool_repeats: int = 1,
    pool_mode: str = "random",
    image_of_row: Tensor | None = None,
) -> dict[str, float]:
    """image→text and text→image R@k, mean rank and median rank (1 = the match ranked first) for paired
    rows of `image` and `text` (N×d each).

    image_of_row (N, any integer key): rows with the same key are captions of one image (COCO: 5 per
    image; the image's embedding repeated on each of its rows). Then the images are ranked once each
    (a hit when any of their captions is retrieved), texts one query per caption, and pools are drawn
    over images (a pool of P images holds all their captions). None: one text per image.

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
    if image_of_row is None:
        images, owner = image, torch.arange(len(image), device=image.device)
    else:
        firsts, owner = images_of_rows(image_of_row)
        images, owner = image[firsts.to(image.device)], owner.to(image.device)
    candidate_pools = pools(len(images), pool_size, pool_seed, pool_repeats, pool_mode)
    if pool_size is not None and len(images) == len(text):  # one text per image: all pools in a few batched products
        texts = text if image_of_row is None else text[torch.argsort(owner)]  # row i describes image i
        image_to_text, text_to_image = _pooled_ranks(images, texts, torch.stack(candidate_pools).to(image.device))
        ranks = {"image_to_text": [image_to_text], "text_to_image": [text_to_image]}
    else:
        ranks = {"image_to_text": [], "text_to_image": []}
        for pool, rows, local_owner in _pool_rows(candidate_pools, owner, len(images)):
            image_to_text, text_to_image = _ranks(images[pool], text[rows], local_owner)
            ranks["image_to_text"].append(image_to_text)
            ranks["text_to_image"].append(text_to_image)
    suffix = "" if pool_size is None else f"_{POOL_KEY[pool_mode]}{pool_size}"
    metrics = {}
    for direction, direction_ranks in ranks.items():
        positions = torch.cat(direction_ranks).double().cpu() + 1.0  # 1 = first
        metrics |= {f"{direction}_R@{k}{suffix}": float((positions <= k).double().mean()) for k in ks}
        metrics[f"{direction}_mean_rank{suffix}"] = float(positions.mean())
        metrics[f"{direction}_median_rank{suffix}"] = float(positions.quantile(0.5))  # the mean of the two middle ranks for even counts
    return metrics
