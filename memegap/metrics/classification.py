"""Classification metrics of a whole split, as pure functions on logits and labels (torchmetrics)."""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics.functional.classification import (
    multiclass_accuracy,
    multiclass_confusion_matrix,
    multiclass_f1_score,
    multiclass_precision,
    multiclass_recall,
)


def classification_summary(logits: Tensor, labels: Tensor, num_classes: int) -> dict[str, float]:
    """Scalar metrics of N predictions: logits N×C, labels N (int64).

    Keys: acc (top-1, the share of all N), acc_top5 (top-min(5, C)), balanced_acc (the mean of the
    per-class recalls), and precision_macro, recall_macro, f1_macro: unweighted means over the classes
    that occur among the labels or the predictions (torchmetrics leaves the others out of the mean).
    """
    logits, labels = logits.float(), labels.long()
    top_k = min(5, num_classes)
    common = {"num_classes": num_classes}
    return {
        "acc": float(multiclass_accuracy(logits, labels, average="micro", **common)),
        f"acc_top{top_k}": float(multiclass_accuracy(logits, labels, average="micro", top_k=top_k, **common)),
        "balanced_acc": float(multiclass_accuracy(logits, labels, average="macro", **common)),
        "precision_macro": float(multiclass_precision(logits, labels, average="macro", **common)),
        "recall_macro": float(multiclass_recall(logits, labels, average="macro", **common)),
        "f1_macro": float(multiclass_f1_score(logits, labels, average="macro", **common)),
    }


def per_class_metrics(logits: Tensor, labels: Tensor, num_classes: int) -> dict[str, Tensor]:
    """Per-class precision, recall, F1 (each a length-C float tensor) and support (the count of each
    class among the labels, int64)."""
    logits, labels = logits.float(), labels.long()
    return {
        "precision": multiclass_precision(logits, labels, num_classes=num_classes, average=None),
        "recall": multiclass_recall(logits, labels, num_classes=num_classes, average=None),
        "f1": multiclass_f1_score(logits, labels, num_classes=num_classes, average=None),
        "support": torch.bincount(labels, minlength=num_classes),
    }


def confusion_matrix(logits: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    """C×C counts: row = true class, column = predicted class (int64)."""
    return multiclass_confusion_matrix(logits.float(), labels.long(), num_classes=num_classes)
