"""StagedModule: the LightningModule base of models whose one `_step(batch, stage)` serves training,
validation and test."""

from __future__ import annotations

from abc import ABC, abstractmethod

import lightning as L
from torch import Tensor


class StagedModule(L.LightningModule, ABC):
    """Subclasses define `_step(batch, stage)` -> {"loss": scalar, "embeddings": {...}, and the batch keys
    the callbacks read}. Training returns the loss and logs the learning rate per step; validation and
    test return the whole dict, which the callbacks gather (memegap.callbacks.collect)."""

    @abstractmethod
    def _step(self, batch: dict, stage: str) -> dict:
        """The loss and outputs of one batch at `stage` ("train", "val" or "test")."""

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        loss = self._step(batch, "train")["loss"]
        self.log("train/lr", self.optimizers().param_groups[0]["lr"], on_step=True, on_epoch=False)
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> dict:
        return self._step(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> dict:
        return self._step(batch, "test")
