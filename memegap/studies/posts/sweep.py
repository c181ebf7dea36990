"""Choosing a setting from a swept grid of scores."""

from __future__ import annotations

import numpy as np


def plateau_centre(grid: np.ndarray, scores: np.ndarray) -> float:
    """The grid value of the highest score; among ties, the one in the middle of the longest run of
    neighbouring ties (a plateau's centre is the choice least tied to the posts it was chosen on)."""
    best = np.flatnonzero(scores == np.max(scores))
    runs = np.split(best, np.flatnonzero(np.diff(best) > 1) + 1)
    longest = max(runs, key=len)
    return float(np.asarray(grid)[longest[len(longest) // 2]])
