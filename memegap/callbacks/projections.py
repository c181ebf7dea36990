"""Pictures of a likes model's embedding, drawn once at the end (never per epoch: UMAP compiles for
about 10 s in each new process): 2-D maps (UMAP, t-SNE) of the training and test memes coloured by
log10(likes), and a gallery of test memes beside their nearest training memes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from memegap.utils.figures import save_figure


def plot_projections(train: Tensor, test: Tensor, train_likes: np.ndarray, test_likes: np.ndarray, path: Path, seed: int = 0) -> None:
    """UMAP (umap-learn) and t-SNE (scikit-learn) of the train + test embeddings (N×D) side by side;
    colour = log10(likes), circles = train, crosses = test."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import umap
    from sklearn.manifold import TSNE

    points = torch.cat([train, test]).double().numpy()
    n_train = len(train)
    maps = {
        "UMAP": umap.UMAP(n_neighbors=15, random_state=seed, n_jobs=1).fit_transform(points),
        "t-SNE": TSNE(perplexity=min(30.0, (len(points) - 1) / 3), random_state=seed, init="pca").fit_transform(points),
    }
    colour = np.log10(np.maximum(np.concatenate([train_likes, test_likes]), 1.0))
    figure, axes = plt.subplots(1, 2, figsize=(12, 5))
    for axis, (name, xy) in zip(axes, maps.items()):
        axis.scatter(xy[:n_train, 0], xy[:n_train, 1], c=colour[:n_train], s=8, cmap="viridis", label="train")
        shown = axis.scatter(xy[n_train:, 0], xy[n_train:, 1], c=colour[n_train:], s=24, marker="x", cmap="viridis", label="test")
        axis.set(title=f"{name} of the embeddings", xticks=[], yticks=[])
        axis.legend(loc="best")
    figure.colorbar(shown, ax=axes, label="log10(likes)")
    save_figure(figure, path)


def plot_gallery(test_images: Tensor, test_likes: np.ndarray, train_images: Tensor, train_likes: np.ndarray,
                 neighbours: Tensor, distances: Tensor, predicted: np.ndarray, path: Path, rows: int = 6) -> None:
    """`rows` test memes (evenly spread over the test set), each beside its nearest training memes:
    images (uint8 N×3×S×S), their likes, and the distance in the embedding."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chosen = np.linspace(0, len(test_images) - 1, min(rows, len(test_images))).astype(int)
    columns = 1 + neighbours.shape[1]
    figure, axes = plt.subplots(len(chosen), columns, figsize=(1.8 * columns, 2.0 * len(chosen)), squeeze=False)
    for row, k in enumerate(chosen):
        axes[row, 0].imshow(test_images[k].permute(1, 2, 0).numpy())
        axes[row, 0].set_title(f"test: {test_likes[k]:,.0f}\npredicted {predicted[k]:,.0f}", fontsize=8)
        for column, (j, distance) in enumerate(zip(neighbours[k].tolist(), distances[k].tolist()), start=1):
            axes[row, column].imshow(train_images[j].permute(1, 2, 0).numpy())
            axes[row, column].set_title(f"{train_likes[j]:,.0f} likes\nd = {distance:.2f}", fontsize=8)
    for axis in axes.flat:
        axis.axis("off")
    figure.suptitle("test memes (left) and their nearest training memes in the embedding")
    figure.tight_layout()
    save_figure(figure, path)
