"""Likes as the models see them: the target scale (raw likes or log1p) and the like bins. One definition,
shared by the memes data module, the likes models and baselines, the popularity metrics and callbacks.
Likes are counts (float, ≥ 0); bins are int64 indices 0 … n_bins − 1."""

from __future__ import annotations

import numpy as np

# The memes thesis's like bins: [750, 1000], [1001, 1500], [1501, 2000], 2001+ (upper edges, inclusive).
THESIS_BIN_EDGES = (1000.0, 1500.0, 2000.0)
BIN_KINDS = ("thesis", "quantile")
TARGETS = ("raw", "log1p")


def like_bin_edges(kind: str, train_likes: np.ndarray, n_bins: int) -> np.ndarray:
    """Upper edges of every bin but the last: the thesis's fixed edges, or quantiles of the training likes."""
    if kind == "thesis":
        return np.array(THESIS_BIN_EDGES)
    return np.quantile(train_likes, np.arange(1, n_bins) / n_bins)


def like_bins(likes: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """The bin of each like count: the number of upper edges below it (edges are inclusive)."""
    return np.searchsorted(edges, likes, side="left")


def to_target(likes, target: str):
    """Likes (a numpy array or a tensor) on the scale the models predict: as they are (raw) or log1p."""
    if target != "log1p":
        return likes
    return np.log1p(likes) if isinstance(likes, np.ndarray) else likes.log1p()


def from_target(values, target: str):
    """Back from the target scale to likes."""
    if target != "log1p":
        return values
    return np.expm1(values) if isinstance(values, np.ndarray) else values.expm1()
