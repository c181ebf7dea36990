"""DataCounts: the data module's counts (pairs per split, rows and images left out by reason) in the run's logs."""

from __future__ import annotations

import lightning as L


class DataCounts(L.Callback):
    """Sends `data/<name>` for every entry of the data module's `counts` dict (e.g. data/unreadable_images,
    data/bad_rows, data/train_pairs) to every logger, once, when the first stage starts, so a run's
    dashboard says how much of the data it used and what it left out. Data modules without counts: nothing."""

    def __init__(self) -> None:
        self._sent = False

    def _send(self, trainer: L.Trainer) -> None:
        counts = getattr(trainer.datamodule, "counts", None)
        if self._sent or not counts or not trainer.is_global_zero:
            return
        self._sent = True
        for logger in trainer.loggers:
            logger.log_metrics({f"data/{name}": float(value) for name, value in counts.items()}, step=trainer.global_step)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._send(trainer)

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._send(trainer)
