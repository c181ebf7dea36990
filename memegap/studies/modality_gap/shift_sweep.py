"""Embedding shift along the modality gap (Liang et al., 2022, "Mind the Gap", their Sec. 4.2).

With Δ = mean(x̂) − mean(ŷ) the gap vector of L2-normalised image embeddings x̂ and text embeddings ŷ,
shift(λ) moves the two modalities in opposite directions and renormalises:
x′ = normalise(x̂ − λΔ/2), y′ = normalise(ŷ + λΔ/2). λ = 0 leaves them as they are, λ = 1 brings their
means together (before renormalising), λ < 0 widens the gap. (The modality-gap thesis prints a shift of
both modalities in the same direction, a typo: the difference of the means then stays Δ.)
"""

from __future__ import annotations

import warnings

import torch
from sklearn.metrics import accuracy_score, balanced_accuracy_score
from torch import Tensor

from memegap.losses.contrastive import clip_loss
from memegap.metrics.geometry import modality_gap
from memegap.metrics.retrieval import first_rows, pools, recall_at_k


def gap_vector(x: Tensor, y: Tensor) -> Tensor:
    """Δ = mean(x̂) − mean(ŷ) (d, float64) of N×d and M×d embeddings."""
    return modality_gap(x, y)[1]


def shift(x: Tensor, y: Tensor, lam: float, delta: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """(normalise(x̂ − λΔ/2), normalise(ŷ + λΔ/2)), float64; Δ from x and y unless given."""
    delta = gap_vector(x, y) if delta is None else delta.double()
    x_hat = torch.nn.functional.normalize(x.double(), dim=1)
    y_hat = torch.nn.functional.normalize(y.double(), dim=1)
    return (torch.nn.functional.normalize(x_hat - lam * delta / 2, dim=1), torch.nn.functional.normalize(y_hat + lam * delta / 2, dim=1))


def shift_sweep(
    image: Tensor,
    text: Tensor,
    lambdas: list[float],
    logit_scale: float,
    pool_size: int = 90,
    pool_repeats: int = 10,
    image_of_row: Tensor | None = None,
    labels: Tensor | None = None,
    class_text: Tensor | None = None,
) -> list[dict[str, float]]:
    """For each λ: the gap, R@1/5/10 in pools of `pool_size` (both directions, random pools as the
    retrieval callback's), the contrastive loss (CLIP's CE at exp(logit_scale), mean over the pools of
    the first permutation) and, given class `labels` (N; −1: no class, left out) and the embedded class
    prompts `class_text` (C×d, shifted like the texts), zero-shot accuracy: the share of images whose
    nearest class prompt is their class, and its balanced form (the mean of the per-class shares, over
    the classes present). image_of_row: see recall_at_k (the gap and the loss then take each image
    once, with its first caption)."""
    firsts = first_rows(image_of_row, len(image))
    delta = gap_vector(image[firsts], text[firsts])
    pool_size = min(pool_size, len(firsts))
    loss_pools = pools(len(firsts), pool_size, pool_seed=0, repeats=1)
    scale = torch.tensor(logit_scale, dtype=torch.float64)
    rows = []
    for lam in lambdas:
        x, y = shift(image, text, lam, delta)
        x_once, y_once = x[firsts], y[firsts]  # each image once, with its first caption
        row = {"lambda": float(lam), "gap": modality_gap(x_once, y_once)[0]}
        recall = recall_at_k(x, y, pool_size=pool_size, pool_repeats=pool_repeats, image_of_row=image_of_row)
        row |= {key.replace(f"_pool{pool_size}", ""): value for key, value in recall.items() if "_R@" in key}
        row["loss"] = float(torch.stack([clip_loss(x_once[pool], y_once[pool], scale) for pool in loss_pools]).mean())
        if labels is not None and class_text is not None:
            classes = torch.nn.functional.normalize(torch.nn.functional.normalize(class_text.double(), dim=1) + lam * delta / 2, dim=1)
            known = labels >= 0
            truth, predicted = labels[known].numpy(), (x[known] @ classes.T).argmax(1).numpy()
            row["zero_shot_accuracy"] = float(accuracy_score(truth, predicted))
            with warnings.catch_warnings():  # a class predicted but absent from the labels is meant to be left out
                warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
                row["zero_shot_balanced_accuracy"] = float(balanced_accuracy_score(truth, predicted))
        rows.append(row)
    return rows
