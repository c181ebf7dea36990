"""Base callback that gathers the embeddings returned by validation/test steps.

Contract: a LightningModule's validation_step and test_step return {"loss": ..., "embeddings":
self.embed(batch)}, where embed returns a dict of N×d tensors ({"image", "text"} or {"anchor",
"positive"}). The sanity check is ignored. Under DDP the embeddings of all ranks are gathered.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import defaultdict

import lightning as L
import torch
from torch import Tensor


class EmbeddingCollector(L.Callback, ABC):
    """Collects step embeddings per stage; subclasses implement `on_embeddings`."""

    def __init__(self) -> None:
        self._batches: dict[str, list[Tensor]] = defaultdict(list)

    @abstractmethod
    def on_embeddings(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str, embeddings: dict[str, Tensor]) -> None:
        """Handle the embeddings of a whole validation/test epoch: {modality: N×d}."""

    def _collect(self, trainer: L.Trainer, outputs) -> None:
        if trainer.sanity_checking:
            return
        if not isinstance(outputs, dict) or "embeddings" not in outputs:
            raise TypeError(
                f"{type(self).__name__} needs validation_step/test_step to return {{'loss', 'embeddings'}}, got {type(outputs).__name__}"
            )
        for name, value in outputs["embeddings"].items():
            self._batches[name].append(value.detach().float().cpu())

    def _finish(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if trainer.sanity_checking or not self._batches:
            return
        embeddings = {name: torch.cat(parts) for name, parts in self._batches.items()}
        self._batches = defaultdict(list)
        if trainer.world_size > 1:
            embeddings = {name: pl_module.all_gather(value.to(pl_module.device)).flatten(0, 1).cpu() for name, value in embeddings.items()}
        self.on_embeddings(trainer, pl_module, stage, embeddings)

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self._batches = defaultdict(list)  # nothing left over from an interrupted stage

    def on_test_epoch_start(self, trainer, pl_module) -> None:
        self._batches = defaultdict(list)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._collect(trainer, outputs)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._collect(trainer, outputs)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        self._finish(trainer, pl_module, "val")

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        self._finish(trainer, pl_module, "test")
