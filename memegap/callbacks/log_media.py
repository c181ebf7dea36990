"""Histograms and pictures to every attached logger (W&B, TensorBoard, CSV)."""

from __future__ import annotations

import csv
from pathlib import Path

import lightning as L
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger, WandbLogger
from torch import Tensor


def log_histogram(trainer: L.Trainer, name: str, counts: Tensor, edges: Tensor) -> None:
    """Log pre-binned counts (length B) with bin edges (length B+1) at the current global step.

    W&B: a wandb.Histogram; TensorBoard: a raw histogram (sum and sum of squares from bin centres);
    CSV: rows (step, epoch, name, bin_left, bin_right, count) appended to <log_dir>/histograms.csv.
    """
    step, epoch = trainer.global_step, trainer.current_epoch
    counts_list, edges_list = counts.tolist(), edges.tolist()
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            import wandb

            logger.log_metrics({name: wandb.Histogram(np_histogram=(counts_list, edges_list))}, step=step)
        elif isinstance(logger, TensorBoardLogger):
            centres = (edges[1:] + edges[:-1]) / 2
            nonzero = counts.nonzero().flatten()
            if len(nonzero) == 0:
                continue
            logger.experiment.add_histogram_raw(
                name,
                min=float(edges[nonzero[0]]),
                max=float(edges[nonzero[-1] + 1]),
                num=int(counts.sum()),
                sum=float((counts * centres).sum()),
                sum_squares=float((counts * centres**2).sum()),
                bucket_limits=edges_list[1:],
                bucket_counts=counts_list,
                global_step=step,
            )
        elif isinstance(logger, CSVLogger):
            path = Path(logger.log_dir) / "histograms.csv"
            path.parent.mkdir(parents=True, exist_ok=True)
            new_file = not path.exists()
            with path.open("a", newline="") as handle:
                writer = csv.writer(handle)
                if new_file:
                    writer.writerow(["step", "epoch", "name", "bin_left", "bin_right", "count"])
                for left, right, count in zip(edges_list[:-1], edges_list[1:], counts_list):
                    writer.writerow([step, epoch, name, left, right, count])


def log_picture(trainer: L.Trainer, name: str, path: Path) -> None:
    """Attach a PNG already saved in the run dir to the W&B run (other loggers keep the file only)."""
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            logger.log_image(key=name, images=[str(path)], step=trainer.global_step)


def log_table(trainer: L.Trainer, name: str, frames: list, thumbnail=None) -> None:
    """Rows of embeddings (pandas frames with the columns of callbacks.embedding_export) as one wandb.Table
    `name`, the columns the projector panel reads: id, modality, label/bin/likes where present, the vector
    as a list, and a thumbnail for image rows when `thumbnail(position) -> uint8 3×S×S` is given. W&B only."""
    loggers = [logger for logger in trainer.loggers if isinstance(logger, WandbLogger)]
    if not loggers:
        return
    import wandb

    labels = [column for column in ("label", "bin", "likes") if column in frames[0].columns]
    columns = ["id", "modality", *labels, "vector", *(["thumbnail"] if thumbnail else [])]
    table = wandb.Table(columns=columns)
    for frame in frames:
        for row in frame.itertuples(index=False):
            picture = [wandb.Image(thumbnail(row.position).permute(1, 2, 0).numpy()) if row.modality == "image" else None] if thumbnail else []
            table.add_data(row.id, row.modality, *(getattr(row, column) for column in labels), [float(value) for value in row.vector], *picture)
    for logger in loggers:
        logger.log_metrics({name: table}, step=trainer.global_step)


def log_artifact(trainer: L.Trainer, name: str, kind: str, paths: list[Path]) -> None:
    """The files as the W&B artifact `<name>-<run id>` of type `kind`, when the W&B logger logs the model
    (logger.wandb.log_model: Lightning's convention for what a run hands on); nothing otherwise."""
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger) and getattr(logger, "_log_model", False) and paths:
            import wandb

            artifact = wandb.Artifact(name=f"{name}-{logger.experiment.id}", type=kind)
            for path in paths:
                artifact.add_file(str(path), name=Path(path).name)
            logger.experiment.log_artifact(artifact)
