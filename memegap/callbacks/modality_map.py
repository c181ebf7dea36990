"""ModalityMap: the picture the modality-gap literature is known for (Liang et al. 2022, Fig. 1; the thesis's
Figs 3.1/3.3): image and text embeddings of one model in one 2-D map, coloured by modality, a sample of pairs
joined by lines; the untrained model (the test before fit) beside the trained one, so the cone effect and what
training did to the gap are seen side by side.

Drawn once, at the trained model's test (never per epoch: UMAP compiles for about 10 s in each new process), to
`<run dir>/geometry/modalities.png` and W&B `test/geometry/modalities`. A model with one modality draws nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch import Tensor

from memegap.callbacks.collect import EmbeddingCollector, is_before_fit
from memegap.callbacks.log_media import log_picture
from memegap.metrics.geometry import modality_gap
from memegap.metrics.retrieval import each_image_once
from memegap.utils.figures import save_figure

MAPS = ("pca", "umap")


def project(points: np.ndarray, method: str, seed: int) -> np.ndarray:
    """N×d -> N×2 by PCA (scikit-learn) or UMAP (umap-learn, cosine metric), fitted on these points."""
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(n_components=2, random_state=seed).fit_transform(points)
    import umap

    return umap.UMAP(n_neighbors=min(15, len(points) - 1), metric="cosine", random_state=seed, n_jobs=1).fit_transform(points)


def plot_modalities(states: dict[str, dict[str, Tensor]], maps: Sequence[str], path: Path, pairs: int = 30, seed: int = 0) -> None:
    """One column per model state ({"before training": {modality: N×d}, "trained": ...}), side by side, one row
    per map; both modalities (unit-normalised) fitted together, pair k of the two modalities being row k of
    each; `pairs` pairs, evenly spread, joined by grey lines; each panel's title gives the state's modality gap."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(len(maps), len(states), figsize=(5.2 * len(states), 4.6 * len(maps)), squeeze=False)
    colours = ("tab:blue", "tab:orange")
    joined_count = 0
    for column, (state, embeddings) in enumerate(states.items()):
        names = list(embeddings)[:2]
        gap, _ = modality_gap(embeddings[names[0]].float(), embeddings[names[1]].float())
        unit = [torch.nn.functional.normalize(embeddings[name].double(), dim=1).cpu().numpy() for name in names]
        count = len(unit[0])
        joined = np.unique(np.linspace(0, count - 1, min(pairs, count)).round().astype(int))
        joined_count = len(joined)
        for row, method in enumerate(maps):
            xy = project(np.concatenate(unit), method, seed)
            first, second = xy[:count], xy[count:]
            axis = axes[row, column]
            for k in joined:
                axis.plot([first[k, 0], second[k, 0]], [first[k, 1], second[k, 1]], color="0.6", linewidth=0.6, zorder=1)
            for points, name, colour in zip((first, second), names, colours):
                axis.scatter(points[:, 0], points[:, 1], s=7, color=colour, label=name, zorder=2)
            axis.set(title=f"{state} ({method.upper()}), gap {gap:.3f}", xticks=[], yticks=[])
            axis.legend(loc="best", fontsize=8)
    figure.suptitle(f"both modalities in one map, {joined_count} pairs joined")
    figure.tight_layout()
    save_figure(figure, path)


class ModalityMap(EmbeddingCollector):
    """Keeps the test embeddings of the untrained model (test_before_fit) and, at the trained model's test,
    draws both states side by side (`maps`: pca, umap) with `pairs` pairs joined."""

    def __init__(self, maps: Sequence[str] = MAPS, pairs: int = 30) -> None:
        super().__init__()
        unknown = sorted(set(maps) - set(MAPS))
        if unknown or not maps:
            raise ValueError(f"callbacks.modality_map.maps must name some of {list(MAPS)}, got {list(maps)}")
        self.maps, self.pairs = tuple(maps), pairs
        self._before: dict[str, Tensor] | None = None

    def on_embeddings(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str, embeddings: dict[str, Tensor], targets: dict[str, Tensor]) -> None:
        if stage != "test" or len(embeddings) < 2 or not trainer.is_global_zero:
            return
        embeddings = each_image_once(embeddings, targets.get("image_id"))  # each image once, with its first caption
        embeddings = {name: value.detach().cpu() for name, value in list(embeddings.items())[:2]}
        if is_before_fit(trainer):
            self._before = embeddings
            return
        states = ({"before training": self._before} if self._before is not None else {}) | {"trained": embeddings}
        path = Path(trainer.default_root_dir) / "geometry" / "modalities.png"
        plot_modalities(states, self.maps, path, self.pairs, seed=0)
        log_picture(trainer, "test/geometry/modalities", path)
