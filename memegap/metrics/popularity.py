"""Measures of a likes prediction, as pure functions on numpy arrays of N predicted and N true likes.

- per like bin (the memes thesis, Tables 4.1–4.6): MSE and RMSE in likes, and "precision", the share
  of the bin's memes (by true likes) whose predicted likes fall in that same bin;
- overall (what the popularity-prediction field reports): Spearman ρ, MAE of log1p(likes), and the
  pairwise ranking accuracy, each with a bootstrap 95 % interval.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.stats import spearmanr

from memegap.targets import like_bins


def per_bin_metrics(predicted: np.ndarray, true: np.ndarray, edges: np.ndarray) -> list[dict[str, float]]:
    """One dict per like bin (by true likes): bin, n, mse, rmse (likes², likes) and precision."""
    true_bins, predicted_bins = like_bins(true, edges), like_bins(predicted, edges)
    rows = []
    for b in range(len(edges) + 1):
        members = true_bins == b
        n = int(members.sum())
        mse = float(np.mean((predicted[members] - true[members]) ** 2)) if n else float("nan")
        rows.append({"bin": b, "n": n, "mse": mse, "rmse": float(np.sqrt(mse)), "precision": float(np.mean(predicted_bins[members] == b)) if n else float("nan")})
    return rows


def spearman(predicted: np.ndarray, true: np.ndarray) -> float:
    """Spearman's rank correlation; nan when either side is constant (a constant predictor ranks nothing)."""
    if np.ptp(predicted) == 0 or np.ptp(true) == 0:
        return float("nan")
    return float(spearmanr(predicted, true).statistic)


def mae_log(predicted: np.ndarray, true: np.ndarray) -> float:
    """Mean |log1p(predicted) − log1p(true)|."""
    return float(np.mean(np.abs(np.log1p(np.maximum(predicted, 0)) - np.log1p(true))))


def pairwise_accuracy(predicted: np.ndarray, true: np.ndarray, block_size: int = 2048) -> float:
    """The share of pairs (i, j) with different true likes that the prediction orders the same way; a
    tie in the prediction counts one half. Computed block by block (memory O(block_size · N))."""
    correct, pairs = 0.0, 0
    for start in range(0, len(true), block_size):
        true_sign = np.sign(true[start : start + block_size, None] - true[None, :])
        predicted_sign = np.sign(predicted[start : start + block_size, None] - predicted[None, :])
        counted = true_sign != 0
        correct += float(np.sum((predicted_sign == true_sign) & counted) + 0.5 * np.sum((predicted_sign == 0) & counted))
        pairs += int(counted.sum())
    return correct / pairs if pairs else float("nan")


OVERALL: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {"spearman": spearman, "mae_log": mae_log, "pairwise_acc": pairwise_accuracy}


def bootstrap_interval(measure: Callable[[np.ndarray, np.ndarray], float], predicted: np.ndarray, true: np.ndarray, resamples: int = 1000, seed: int = 0) -> tuple[float, float]:
    """The 2.5th and 97.5th percentiles of `measure` over `resamples` resamplings of the N memes with
    replacement (nan resamples, e.g. a constant predictor's Spearman, left out)."""
    generator = np.random.default_rng(seed)
    values = []
    for _ in range(resamples):
        rows = generator.integers(0, len(true), len(true))
        values.append(measure(predicted[rows], true[rows]))
    values = np.array(values)
    values = values[~np.isnan(values)]
    if not len(values):
        return float("nan"), float("nan")
    return float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))


def overall_metrics(predicted: np.ndarray, true: np.ndarray, resamples: int = 1000, seed: int = 0) -> dict[str, float]:
    """{name, name_low, name_high} for spearman, mae_log and pairwise_acc (95 % bootstrap interval)."""
    result = {}
    for name, measure in OVERALL.items():
        result[name] = measure(predicted, true)
        result[f"{name}_low"], result[f"{name}_high"] = bootstrap_interval(measure, predicted, true, resamples, seed)
    return result
