"""ClassificationReport: macro metrics, a per-class table and a confusion-matrix picture of each
validation and test epoch of a classifier."""

from __future__ import annotations

import csv
from pathlib import Path

import lightning as L
from torch import Tensor

from memegap.callbacks.collect import EmbeddingCollector
from memegap.callbacks.log_media import log_picture
from memegap.metrics.classification import classification_summary, confusion_matrix, per_class_metrics
from memegap.utils.figures import save_figure
from memegap.utils.io import atomic_path


class ClassificationReport(EmbeddingCollector):
    """Needs the steps to return "logits" (N×C) and "label" (N), as memegap.models.classifier does.

    Logs `<stage>/classification/{acc_top5, balanced_acc, precision_macro, recall_macro, f1_macro}`
    (top-1 accuracy is the model's own `<stage>/acc`) and writes, for the latest epoch of each stage,
    `<run dir>/classification/<stage>_per_class.csv` (class, precision, recall, f1, support) and
    `<stage>_confusion.png` (rows = true class, normalised per row; also sent to W&B).

    class_names: taken from the data module's `class_names` when left out.
    """

    def __init__(self, save_files: bool = True) -> None:
        super().__init__()
        self.save_files = save_files

    def on_embeddings(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str, embeddings: dict[str, Tensor], targets: dict[str, Tensor]) -> None:
        if "logits" not in targets or "label" not in targets:
            raise TypeError(f"{type(self).__name__} needs validation_step/test_step to return 'logits' and 'label'")
        logits, labels = targets["logits"], targets["label"]
        num_classes = logits.shape[1]
        summary = classification_summary(logits, labels, num_classes)
        self.log_scalars(pl_module, f"{stage}/classification", {key: value for key, value in summary.items() if key != "acc"})
        if not (trainer.is_global_zero and self.save_files):
            return
        names = list(getattr(trainer.datamodule, "class_names", None) or [str(k) for k in range(num_classes)])
        folder = Path(trainer.default_root_dir) / "classification"
        write_per_class_table(per_class_metrics(logits, labels, num_classes), names, folder / f"{stage}_per_class.csv")
        picture = folder / f"{stage}_confusion.png"
        plot_confusion(confusion_matrix(logits, labels, num_classes), names, picture, title=f"{stage}, epoch {trainer.current_epoch}")
        log_picture(trainer, f"{stage}/classification/confusion", picture)


def write_per_class_table(metrics: dict[str, Tensor], names: list[str], path: Path) -> None:
    """One CSV row per class: class, precision, recall, f1, support."""
    with atomic_path(path) as temporary, open(temporary, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["class", "precision", "recall", "f1", "support"])
        for index, name in enumerate(names):
            writer.writerow([name, *(f"{float(metrics[key][index]):.4f}" for key in ("precision", "recall", "f1")), int(metrics["support"][index])])


def plot_confusion(counts: Tensor, names: list[str], path: Path, title: str) -> None:
    """The confusion matrix as a heatmap of row-normalised counts (the share of each true class
    predicted as each class); class names on the axes when there are at most 30 classes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shares = (counts.double() / counts.sum(1, keepdim=True).clamp(min=1)).numpy()
    size = min(12.0, 3.0 + 0.3 * len(names))
    figure, axis = plt.subplots(figsize=(size + 1.5, size))
    image = axis.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    figure.colorbar(image, ax=axis, fraction=0.046, label="share of the true class")
    if len(names) <= 30:
        axis.set_xticks(range(len(names)), names, rotation=90, fontsize=8)
        axis.set_yticks(range(len(names)), names, fontsize=8)
    axis.set(xlabel="predicted class", ylabel="true class", title=f"{title}, accuracy {float(counts.diagonal().sum() / counts.sum().clamp(min=1)):.3f}")
    figure.tight_layout()
    save_figure(figure, path)
