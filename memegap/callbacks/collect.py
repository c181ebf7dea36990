"""Base callback that gathers the embeddings returned by validation/test steps.

Contract: a LightningModule's validation_step and test_step return {"loss": ..., "embeddings":
self.embed(batch)}, where embed returns a dict of N×d tensors ({"image", "text"} or {"anchor",
"positive"}, or {"image"} alone for a classifier). Beside them, under the batch keys' own names
(memegap.batch.SCHEMA): a classifier returns "label" (N, int64) and "logits" (N×C), a likes model
"bin" (like bins) and "likes" (N), a dual encoder "image_id" (each pair's image, shared by the
captions of one image); they are gathered beside the embeddings as `targets`. Callbacks get both on the module's device. The sanity check is ignored. Under DDP the tensors of all ranks are gathered.
The batches' "id" lists (the rows' ids in their source) are gathered the same way, in the same order, into
`row_ids` (None when the data gives none), for the callbacks that write rows out.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

import lightning as L
import torch
from torch import Tensor

from memegap.batch import STEP_TARGETS


@contextmanager
def testing_before_fit(trainer: L.Trainer) -> Iterator[None]:
    """Marks the trainer while train.py's test_before_fit tests the untrained model, so the callbacks that
    keep results (the embedding export, the modality map) can tell that test from the trained model's."""
    trainer.memegap_before_fit = True
    try:
        yield
    finally:
        trainer.memegap_before_fit = False


def is_before_fit(trainer: L.Trainer) -> bool:
    return getattr(trainer, "memegap_before_fit", False)


def gather_ids(ids: list[str] | None, world_size: int) -> list[str] | None:
    """Every rank's ids, rank after rank (the order of Lightning's all_gather(...).flatten(0, 1)); None
    when a rank has none."""
    gathered: list[list[str] | None] = [None] * world_size
    torch.distributed.all_gather_object(gathered, ids)
    return None if any(part is None for part in gathered) else [key for part in gathered for key in part]


class EmbeddingCollector(L.Callback, ABC):
    """Collects step embeddings per stage; subclasses implement `on_embeddings`."""

    def __init__(self) -> None:
        self._reset()

    @abstractmethod
    def on_embeddings(
        self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str, embeddings: dict[str, Tensor], targets: dict[str, Tensor]
    ) -> None:
        """Handle the embeddings of a whole validation/test epoch: {modality: N×d}, and the targets
        the steps returned beside them ({"label": N, "logits": N×C}, {"image_id": N} for pairs)."""

    @staticmethod
    def log_scalars(pl_module: L.LightningModule, prefix: str, values: dict[str, float]) -> None:
        """Log `<prefix>/<name>` for each value. The values come from embeddings gathered over every DDP
        rank, so they are the same on each: sync_dist costs one reduction and keeps Lightning from
        warning, once per key, that epoch-level metrics should be synced."""
        for name, value in values.items():
            pl_module.log(f"{prefix}/{name}", value, sync_dist=True)

    def _collect(self, trainer: L.Trainer, outputs, batch) -> None:
        if trainer.sanity_checking:
            return
        if not isinstance(outputs, dict) or "embeddings" not in outputs:
            raise TypeError(
                f"{type(self).__name__} needs validation_step/test_step to return {{'loss', 'embeddings'}}, got {type(outputs).__name__}"
            )
        for name, value in outputs["embeddings"].items():
            self._batches[name].append(value.detach().float().cpu())
        for name in STEP_TARGETS:
            if name in outputs:
                self._targets[name].append(outputs[name].detach().cpu())
        ids = batch.get("id") if isinstance(batch, dict) else None
        if ids is None:
            self._ids = None
        elif self._ids is not None:
            self._ids.extend(map(str, ids))

    def _finish(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if trainer.sanity_checking or not self._batches:
            return
        # Gathered on the CPU batch by batch, measured on the module's device (a GPU's when it has one).
        embeddings = {name: torch.cat(parts).to(pl_module.device) for name, parts in self._batches.items()}
        targets = {name: torch.cat(parts).to(pl_module.device) for name, parts in self._targets.items()}
        ids = self._ids if self._ids is not None and len(self._ids) == len(next(iter(embeddings.values()))) else None
        self._reset()
        if trainer.world_size > 1:
            embeddings, targets = (
                {name: pl_module.all_gather(value).flatten(0, 1) for name, value in tensors.items()} for tensors in (embeddings, targets)
            )
            ids = gather_ids(ids, trainer.world_size)
        self.row_ids = ids
        self.on_embeddings(trainer, pl_module, stage, embeddings, targets)

    def _reset(self) -> None:
        self._batches: dict[str, list[Tensor]] = defaultdict(list)
        self._targets: dict[str, list[Tensor]] = defaultdict(list)
        self._ids: list[str] | None = []  # None once a batch came without ids
        self.row_ids: list[str] | None = None  # the ids of the rows handed to on_embeddings, in their order

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self._reset()  # nothing left over from an interrupted stage

    def on_test_epoch_start(self, trainer, pl_module) -> None:
        self._reset()

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._collect(trainer, outputs, batch)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._collect(trainer, outputs, batch)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        self._finish(trainer, pl_module, "val")

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        self._finish(trainer, pl_module, "test")
