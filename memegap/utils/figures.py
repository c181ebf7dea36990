"""Saving a matplotlib figure: the one way every picture of memegap is written."""

from __future__ import annotations

from pathlib import Path

from memegap.utils.io import atomic_path


def save_figure(figure, path: Path, dpi: int = 90) -> None:
    """Write `figure` as a PNG to `path` atomically (an interrupted write keeps the previous file) and close it."""
    import matplotlib.pyplot as plt

    with atomic_path(Path(path)) as temporary:
        figure.savefig(temporary, format="png", dpi=dpi)
    plt.close(figure)
