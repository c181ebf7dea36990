"""The memes thesis's triplet loss (000, ch. 3), from pytorch-metric-learning: the distances it is
measured with and the thesis's margins."""

from __future__ import annotations

import math

from pytorch_metric_learning import distances, losses, reducers

DISTANCES = ("euclidean", "cosine")
DEFAULT_MARGIN = {"euclidean": 1.0, "cosine": math.sqrt(3) / 2}  # the thesis: 1, and cos 30°


def triplet_loss(distance: str, margin: float) -> losses.TripletMarginLoss:
    """max(0, d(a, p) − d(a, n) + margin) averaged over every triplet (MeanReducer, zeros included).
    euclidean: the plain L2 distance of the raw embeddings (as the thesis); cosine: similarities of
    the normalised embeddings, i.e. the distance 1 − cos."""
    measure = distances.LpDistance(normalize_embeddings=False) if distance == "euclidean" else distances.CosineSimilarity()
    return losses.TripletMarginLoss(margin=margin, distance=measure, reducer=reducers.MeanReducer())
