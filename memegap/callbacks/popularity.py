"""PopularityReport: the likes of validation and test memes predicted from their nearest training memes
in the model's embedding (kNN, faiss), or by the model's own `predict_targets` where it has one,
measured as the memes thesis did (per like bin) and as the
popularity-prediction field does (Spearman, MAE on log1p, pairwise ranking accuracy, 95 % intervals),
beside the baselines of memegap.baselines.popularity on the same split.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch import Tensor

from memegap.callbacks.collect import EmbeddingCollector
from memegap.callbacks.log_media import log_picture
from memegap.callbacks.projections import plot_gallery, plot_projections
from memegap.targets import from_target, to_target
from memegap.index.knn import KnnIndex, knn_predict
from memegap.metrics.popularity import OVERALL, overall_metrics, per_bin_metrics
from memegap.utils.io import write_text_atomic
from memegap.utils.figures import save_figure

log = logging.getLogger(__name__)


class PopularityReport(EmbeddingCollector):
    """Needs a memes data module (memegap.data.memes: `datasets`, `plain_loader`, `bin_edges`) and steps
    that return "likes" beside the embeddings.

    Each validation epoch logs `val/popularity/{spearman, mae_log, pairwise_acc}`. The test stage logs
    `test/popularity/...` (with `_low` / `_high` 95 % bootstrap bounds, and per like bin `rmse_bin<b>`,
    `precision_bin<b>`) and writes `<run dir>/popularity/`: test_report.md (the thesis's per-bin table,
    the overall table with the baselines), test_report.json, test_predictions.csv and
    likes_histogram.png (train vs test).

    k / weighting: the kNN predictor (the thesis: the mean likes of the 10 nearest training memes).
    baselines: also run the baselines at test (about a minute on 2 CPU cores for 1,600 memes).
    pictures: also draw, at test, projections.png (UMAP and t-SNE of train and test embeddings by
    log-likes) and gallery.png (test memes beside their nearest training memes), also sent to W&B.
    """

    needs_data = ("datasets", "plain_loader", "bin_edges")  # the training memes, in order, and the like bins (MemesDataModule)

    def __init__(self, k: int = 10, weighting: str = "mean", baselines: bool = True, pictures: bool = True, bootstrap_resamples: int = 1000) -> None:
        super().__init__()
        self.k, self.weighting, self.baselines, self.pictures, self.resamples = k, weighting, baselines, pictures, bootstrap_resamples

    @torch.no_grad()
    def _training_embeddings(self, trainer: L.Trainer, pl_module: L.LightningModule) -> Tensor:
        was_training = pl_module.training
        pl_module.eval()
        parts = []
        for batch in trainer.datamodule.plain_loader("train"):
            batch = {key: value.to(pl_module.device) if isinstance(value, Tensor) else value for key, value in batch.items()}
            parts.append(next(iter(pl_module.embed(batch).values())).float().cpu())
        pl_module.train(was_training)
        return torch.cat(parts)

    def on_embeddings(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str, embeddings: dict[str, Tensor], targets: dict[str, Tensor]) -> None:
        data = trainer.datamodule
        train_set, target = data.datasets["train"], data.hparams.target
        if "lda_coherence" in getattr(data, "text_report", {}):  # to choose data.lda_topics
            self.log_scalars(pl_module, "data", {"lda_coherence": data.text_report["lda_coherence"]})
        metric = pl_module.knn_metric() if hasattr(pl_module, "knn_metric") else "l2"
        train_embeddings = self._training_embeddings(trainer, pl_module)
        queries = next(iter(embeddings.values()))
        if hasattr(pl_module, "predict_targets"):  # the memes nets: kNN, or the siamese regression's own rule
            predicted_targets, _ = pl_module.predict_targets(train_embeddings, train_set.targets, queries.cpu(), self.k, self.weighting)
        else:  # another model's embedding on memes (a dual encoder's image tower)
            predicted_targets = knn_predict(KnnIndex(train_embeddings, metric=metric), train_set.targets, queries, self.k, self.weighting)
        predicted = from_target(predicted_targets.double().numpy(), target)
        true = targets["likes"].double().numpy()
        if stage == "val":
            self.log_scalars(pl_module, "val/popularity", {name: measure(predicted, true) for name, measure in OVERALL.items()})
            return
        overall = overall_metrics(predicted, true, self.resamples)
        bins = per_bin_metrics(predicted, true, data.bin_edges)
        self.log_scalars(pl_module, "test/popularity", overall)
        self.log_scalars(pl_module, "test/popularity", {f"{measure}_bin{row['bin']}": row[measure] for row in bins for measure in ("rmse", "precision")})
        if not trainer.is_global_zero:
            return
        folder = Path(trainer.default_root_dir) / "popularity"
        test_set = data.datasets["test"]
        rows = {f"this model ({getattr(pl_module, 'predictor_name', 'kNN')}, k = {self.k})": (overall, bins)}
        if self.baselines:
            log.info("popularity: running the baselines on the same split (frozen image and text features, ridge)")
            split = {name: {"images": s.images, "texts": s.texts, "target": to_target(s.likes.numpy(), target)} for name, s in (("train", train_set), ("test", test_set))}
            from memegap.baselines.popularity import baseline_predictions

            for name, values in baseline_predictions(split["train"], split["test"], target, self.k).items():
                rows[name] = (overall_metrics(values, true, self.resamples), per_bin_metrics(values, true, data.bin_edges))
        write_text_atomic(folder / "test_report.md", report_markdown(rows, data.bin_edges, len(true)))
        write_text_atomic(folder / "test_report.json", json.dumps({name: {"overall": o, "bins": b} for name, (o, b) in rows.items()}, indent=2) + "\n")
        lines = ["id,likes,predicted_likes", *(f"{i},{t:.0f},{p:.6f}" for i, t, p in zip(test_set.ids, true, predicted))]
        write_text_atomic(folder / "test_predictions.csv", "\n".join(lines) + "\n")
        plot_likes_histogram(train_set.likes.numpy(), test_set.likes.numpy(), folder / "likes_histogram.png")
        log_picture(trainer, "test/popularity/likes_histogram", folder / "likes_histogram.png")
        if self.pictures:
            plot_projections(train_embeddings, queries, train_set.likes.numpy(), true, folder / "projections.png")
            distances, neighbours = KnnIndex(train_embeddings, metric=metric).search(queries, 5)  # the gallery: nearest in the embedding
            plot_gallery(test_set.images, true, train_set.images, train_set.likes.numpy(), neighbours, distances, predicted, folder / "gallery.png")
            for name in ("projections", "gallery"):
                log_picture(trainer, f"test/popularity/{name}", folder / f"{name}.png")
        log.info("popularity report: %s", folder / "test_report.md")


def bin_names(edges: np.ndarray) -> list[str]:
    """'≤ 1,000', '(1,000, 1,500]', …, '> 2,000' for upper edges (inclusive)."""
    bounds = [f"{edge:,.0f}" if float(edge).is_integer() else f"{edge:,.1f}" for edge in edges]
    return [f"≤ {bounds[0]}", *(f"({low}, {high}]" for low, high in zip(bounds, bounds[1:])), f"> {bounds[-1]}"]


def report_markdown(rows: dict[str, tuple[dict, list[dict]]], edges: np.ndarray, n_test: int) -> str:
    """The per-bin table (RMSE in likes and precision, one row per predictor, as the thesis's Tables
    4.1–4.6) and the overall table with 95 % intervals."""
    names = bin_names(edges)
    counts = [row["n"] for row in next(iter(rows.values()))[1]]
    lines = [f"Test memes: {n_test}. Like bins (by true likes): " + ", ".join(f"{name} ({count})" for name, count in zip(names, counts)), "",
             "| predictor | " + " | ".join(f"RMSE {name}" for name in names) + " | " + " | ".join(f"precision {name}" for name in names) + " |",
             "|---|" + "---|" * (2 * len(names))]
    for predictor, (_, bins) in rows.items():
        lines.append(f"| {predictor} | " + " | ".join(f"{b['rmse']:,.0f}" for b in bins) + " | " + " | ".join(f"{b['precision']:.2f}" for b in bins) + " |")
    lines += ["", "| predictor | Spearman ρ | MAE log1p(likes) | pairwise accuracy |", "|---|---|---|---|"]
    for predictor, (overall, _) in rows.items():
        cells = [f"{overall[name]:.3f} [{overall[name + '_low']:.3f}, {overall[name + '_high']:.3f}]" if overall[name] == overall[name] else "– (constant)" for name in OVERALL]
        lines.append(f"| {predictor} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_likes_histogram(train_likes: np.ndarray, test_likes: np.ndarray, path: Path) -> None:
    """Histograms of log10(likes) of the training and test memes (densities), written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 3.5))
    edges = np.linspace(np.log10(max(1.0, min(train_likes.min(), test_likes.min()))), np.log10(max(train_likes.max(), test_likes.max())), 30)
    for name, likes in (("train", train_likes), ("test", test_likes)):
        axis.hist(np.log10(np.maximum(likes, 1.0)), bins=edges, density=True, histtype="step", label=f"{name} ({len(likes)})")
    axis.set(xlabel="log10(likes)", ylabel="density", title="likes of the memes by split")
    axis.legend()
    figure.tight_layout()
    save_figure(figure, path)
