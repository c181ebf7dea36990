"""EmbeddingGeometry: gap, alignment, uniformity and cosine histograms of validation/test embeddings."""

from __future__ import annotations

from pathlib import Path

import lightning as L
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor

from memegap.callbacks.collect import EmbeddingCollector
from memegap.callbacks.log_media import log_histogram, log_picture
from memegap.metrics.geometry import class_cosine_histograms, class_cosine_means, cosine_histograms, geometry_summary, uniformity
from memegap.metrics.retrieval import each_image_once
from memegap.utils.figures import save_figure


class EmbeddingGeometry(EmbeddingCollector):
    """Paired embeddings (two modalities): logs `<stage>/geometry/{gap, alignment, uniformity_<modality>,
    uniformity}` each epoch and the four cosine histograms `<stage>/geometry/cosine_{intra_<x>, intra_<y>,
    inter_paired, inter_cross}`.

    Pairs whose "image_id" target names their image (COCO's 5 captions per image) are measured on each image
    once, with its first caption.

    One modality with classes ("label", a classifier's features; or "bin", a likes model's like bins): logs `<stage>/geometry/uniformity`, the
    mean cosine of same-class and of other-class pairs (`cosine_same_class_mean`, `cosine_other_class_mean`)
    and their two histograms `cosine_same_class`, `cosine_other_class`.

    Either way it saves a PNG of the histograms to `<run dir>/geometry/<stage>_epoch<NNN>.png` (also sent
    to W&B), and at the end of fit one picture of how each validation histogram moved over the epochs,
    `<run dir>/geometry/val_evolution.png` (one panel per histogram, one curve per epoch)."""

    def __init__(self, bins: int = 50, uniformity_t: float = 2.0, save_png: bool = True) -> None:
        super().__init__()
        self.bins, self.uniformity_t, self.save_png = bins, uniformity_t, save_png
        self._val_history: list[tuple[int, dict[str, Tensor], Tensor]] = []  # (epoch, {histogram: counts}, edges)

    def on_embeddings(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str, embeddings: dict[str, Tensor], targets: dict[str, Tensor]) -> None:
        if len(next(iter(embeddings.values()))) < 2:
            rank_zero_warn(f"{stage}: fewer than 2 embeddings; geometry needs at least 2, skipped")
            return
        if len(embeddings) >= 2:
            scalars, panels, edges = self._paired(each_image_once(embeddings, targets.get("image_id")))
        elif "label" in targets or "bin" in targets:
            scalars, panels, edges = self._labelled(embeddings, targets["label"] if "label" in targets else targets["bin"])
        else:
            rank_zero_warn(f"{stage}: one modality without labels; geometry needs two modalities or class labels, skipped")
            return
        self.log_scalars(pl_module, f"{stage}/geometry", scalars)
        if not trainer.is_global_zero:
            return
        for counts in panels.values():
            for label, values in counts.items():
                log_histogram(trainer, f"{stage}/geometry/cosine_{label}", values, edges)
        if stage == "val":
            self._val_history.append((trainer.current_epoch, {label: values for counts in panels.values() for label, values in counts.items()}, edges))
        if self.save_png:
            path = Path(trainer.default_root_dir) / "geometry" / f"{stage}_epoch{trainer.current_epoch:03d}.png"
            headline = f"gap {scalars['gap']:.3f}" if "gap" in scalars else f"uniformity {scalars['uniformity']:.3f}"
            plot_cosine_histograms(panels, edges, path, title=f"{stage}, epoch {trainer.current_epoch}, {headline}")
            log_picture(trainer, f"{stage}/geometry/cosine_histograms", path)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._val_history = []

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.save_png and trainer.is_global_zero and self._val_history:
            path = Path(trainer.default_root_dir) / "geometry" / "val_evolution.png"
            plot_histogram_evolution(self._val_history, path)
            log_picture(trainer, "val/geometry/cosine_histograms_over_epochs", path)

    def _paired(self, embeddings: dict[str, Tensor]) -> tuple[dict[str, float], dict[str, dict[str, Tensor]], Tensor]:
        (name_x, x), (name_y, y) = list(embeddings.items())[:2]
        scalars = geometry_summary(x, y, names=(name_x, name_y), t=self.uniformity_t)
        counts, edges = cosine_histograms(x, y, bins=self.bins)
        return scalars, paired_panels(counts, (name_x, name_y)), edges

    def _labelled(self, embeddings: dict[str, Tensor], labels: Tensor) -> tuple[dict[str, float], dict[str, dict[str, Tensor]], Tensor]:
        (name, x), = embeddings.items()
        counts, edges = class_cosine_histograms(x, labels, bins=self.bins)
        means = {key: value for key, value in class_cosine_means(x, labels).items() if value == value}  # nan: no such pair
        return {"uniformity": uniformity(x, self.uniformity_t), **means}, {f"{name} features, pairs i < j": counts}, edges


def paired_panels(counts: dict[str, Tensor], names: tuple[str, str]) -> dict[str, dict[str, Tensor]]:
    """cosine_histograms' four counts of paired embeddings as the pictures' two panels ({heading: {label: counts}})."""
    name_x, name_y = names
    return {
        "intra-modality (i < j)": {f"intra_{name_x}": counts["intra_x"], f"intra_{name_y}": counts["intra_y"]},
        "inter-modality": {"inter_paired": counts["inter_paired"], "inter_cross": counts["inter_cross"]},
    }


def plot_cosine_histograms(panels: dict[str, dict[str, Tensor]], edges: Tensor, path: Path, title: str) -> None:
    """One panel per entry of `panels` ({heading: {label: counts}}) of cosine densities, written atomically to `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    centres = ((edges[1:] + edges[:-1]) / 2).numpy()
    width = float(edges[1] - edges[0])
    figure, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6), sharex=True, squeeze=False)
    for axis, (heading, counts) in zip(axes[0], panels.items()):
        for name, values in counts.items():
            density = (values.double() / max(1, int(values.sum())) / width).numpy()
            axis.step(centres, density, where="mid", label=name)
        axis.set(title=heading, xlabel="cosine similarity", ylabel="density", xlim=(-1, 1))
        axis.legend()
    figure.suptitle(title)
    figure.tight_layout()
    save_figure(figure, path)


def plot_histogram_evolution(history: list[tuple[int, dict[str, Tensor], Tensor]], path: Path) -> None:
    """One panel per cosine histogram, one density curve per epoch (dark = early, light = late)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(history[0][1])
    figure, axes = plt.subplots(1, len(names), figsize=(3.6 * len(names) + 1, 3.4), sharex=True, squeeze=False, layout="constrained")
    colours = plt.get_cmap("viridis")
    last_epoch = max(1, history[-1][0])
    for axis, name in zip(axes[0], names):
        for epoch, counts, edges in history:
            centres = ((edges[1:] + edges[:-1]) / 2).numpy()
            width = float(edges[1] - edges[0])
            density = (counts[name].double() / max(1, int(counts[name].sum())) / width).numpy()
            axis.plot(centres, density, color=colours(epoch / last_epoch), linewidth=1.2)
        axis.set(title=name, xlabel="cosine similarity", ylabel="density", xlim=(-1, 1))
    mappable = plt.cm.ScalarMappable(cmap=colours, norm=plt.Normalize(0, last_epoch))
    figure.colorbar(mappable, ax=axes[0].tolist(), label="epoch")
    figure.suptitle("validation cosine histograms over the epochs")
    save_figure(figure, path)
