"""EmbeddingGeometry: gap, alignment, uniformity and cosine histograms of validation/test embeddings."""

from __future__ import annotations

from pathlib import Path

import lightning as L
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor

from memegap.callbacks.collect import EmbeddingCollector
from memegap.callbacks.log_media import log_histogram, log_picture
from memegap.metrics.geometry import cosine_histograms, geometry_summary
from memegap.utils.io import atomic_path


class EmbeddingGeometry(EmbeddingCollector):
    """Logs `<stage>/geometry/{gap, alignment, uniformity_<modality>, uniformity}` each epoch, the four
    cosine histograms `<stage>/geometry/cosine_{intra_<x>, intra_<y>, inter_paired, inter_cross}`, and
    saves a PNG of them to `<run dir>/geometry/<stage>_epoch<NNN>.png` (also sent to W&B)."""

    def __init__(self, bins: int = 50, uniformity_t: float = 2.0, save_png: bool = True) -> None:
        super().__init__()
        self.bins, self.uniformity_t, self.save_png = bins, uniformity_t, save_png

    def on_embeddings(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str, embeddings: dict[str, Tensor]) -> None:
        (name_x, x), (name_y, y) = list(embeddings.items())[:2]
        if len(x) < 2:
            rank_zero_warn(f"{stage}: {len(x)} embedded pair(s); geometry needs at least 2, skipped")
            return
        scalars = geometry_summary(x, y, names=(name_x, name_y), t=self.uniformity_t)
        for key, value in scalars.items():
            pl_module.log(f"{stage}/geometry/{key}", value)
        if not trainer.is_global_zero:
            return
        counts, edges = cosine_histograms(x, y, bins=self.bins)
        labels = {"intra_x": f"intra_{name_x}", "intra_y": f"intra_{name_y}", "inter_paired": "inter_paired", "inter_cross": "inter_cross"}
        for key, label in labels.items():
            log_histogram(trainer, f"{stage}/geometry/cosine_{label}", counts[key], edges)
        if self.save_png:
            path = Path(trainer.default_root_dir) / "geometry" / f"{stage}_epoch{trainer.current_epoch:03d}.png"
            plot_cosine_histograms({labels[k]: v for k, v in counts.items()}, edges, path, title=f"{stage}, epoch {trainer.current_epoch}, gap {scalars['gap']:.3f}")
            log_picture(trainer, f"{stage}/geometry/cosine_histograms", path)


def plot_cosine_histograms(counts: dict[str, Tensor], edges: Tensor, path: Path, title: str) -> None:
    """Two panels (intra-modality, inter-modality) of cosine densities, written atomically to `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    centres = ((edges[1:] + edges[:-1]) / 2).numpy()
    width = float(edges[1] - edges[0])
    figure, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharex=True)
    panels = ([k for k in counts if k.startswith("intra_")], ["inter_paired", "inter_cross"])
    for axis, names, heading in zip(axes, panels, ("intra-modality (i < j)", "inter-modality")):
        for name in names:
            density = (counts[name].double() / max(1, int(counts[name].sum())) / width).numpy()
            axis.step(centres, density, where="mid", label=name)
        axis.set(title=heading, xlabel="cosine similarity", ylabel="density", xlim=(-1, 1))
        axis.legend()
    figure.suptitle(title)
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=90)
    plt.close(figure)
