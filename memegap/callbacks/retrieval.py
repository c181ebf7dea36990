"""CrossModalRetrieval: image→text and text→image R@k over the whole split and in fixed-size pools."""

from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.utilities import move_data_to_device, rank_zero_warn
from torch import Tensor

from memegap.callbacks.collect import EmbeddingCollector
from memegap.errors import UserError
from memegap.metrics.retrieval import DEFAULT_KS, POOL_KEY, POOL_MODES, images_of_rows, recall_at_k


class CrossModalRetrieval(EmbeddingCollector):
    """Logs, in both directions (image_to_text, text_to_image), R@k, mean rank and median rank
    (`<stage>/retrieval/image_to_text_R@k`, `..._mean_rank`, `..._median_rank`) over the whole split, and
    in pools of P images for each of `pool_modes`:
    - "random": `..._pool<P>`, pools cut from `pool_repeats` fixed random permutations, averaged;
    - "batches": `..._batch<P>`, consecutive images in evaluation order (the modality-gap thesis's
      pools were its evaluation batches of 90).
    `<stage>/retrieval/pool_size` is the pool size the pooled keys were measured with.

    When the steps return "image_id" (COCO: 5 captions per image), an image counts once (a hit when any
    of its captions is retrieved) and every caption is a text→image query (metrics.retrieval.recall_at_k).

    train_subset > 0: after each validation and test epoch, also `train/retrieval/...` on that many training images
    (all their pairs), spread evenly over the split and the same every epoch: the overfitting check of the
    modality-gap thesis (its train R@1 61.6 → 99.2 % on COCO). The data module must offer
    `subset_loader(split, images)` (memegap.data.pairs.PairedDataModule).

    A split of fewer than P images is still measured, in one pool of all its images, under the same keys
    (so a checkpoint that monitors them keeps working), with a warning that names the setting."""

    def __init__(
        self,
        ks: tuple[int, ...] = DEFAULT_KS,
        pool_size: int = 90,
        pool_repeats: int = 10,
        pool_modes: tuple[str, ...] = POOL_MODES,
        train_subset: int = 0,
    ) -> None:
        super().__init__()
        unknown = set(pool_modes) - set(POOL_MODES)
        if unknown:
            raise UserError(f"callbacks.cross_modal_retrieval.pool_modes: {sorted(unknown)} not in {list(POOL_MODES)}")
        self.ks, self.pool_size, self.pool_repeats, self.pool_modes = tuple(ks), pool_size, pool_repeats, tuple(pool_modes)
        self.train_subset = train_subset
        self._warned: set[str] = set()

    @property
    def needs_data(self) -> tuple[str, ...]:
        """What it reads of the data module (checked at start-up): the training subset's loader, when measured."""
        return ("subset_loader",) if self.train_subset > 0 else ()

    def on_embeddings(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str, embeddings: dict[str, Tensor], targets: dict[str, Tensor]) -> None:
        self.log_scalars(pl_module, f"{stage}/retrieval", self.measure(stage, embeddings["image"], embeddings["text"], targets.get("image_id")))

    def measure(self, stage: str, image: Tensor, text: Tensor, image_ids: Tensor | None) -> dict[str, float]:
        """The logged metrics (without the `<stage>/retrieval/` prefix) of one split's embeddings."""
        metrics = recall_at_k(image, text, self.ks, image_of_row=image_ids)
        images = len(image) if image_ids is None else len(images_of_rows(image_ids)[0])
        pool_size = min(self.pool_size, images)
        if pool_size < self.pool_size:
            if not self._warned:  # once a run: the val, test and train-subset splits of a small source all repeat it
                self._warned.add(stage)
                rank_zero_warn(
                    f"{stage} has {images} images, fewer than callbacks.cross_modal_retrieval.pool_size={self.pool_size}: "
                    f"its _pool{self.pool_size} metrics use one pool of all {images} (chance R@1 = 1/{images}). "
                    f"Set callbacks.cross_modal_retrieval.pool_size<={images} to compare like with like."
                )
            # one pool of the whole split: the whole-split values, under the pooled keys
            metrics |= {f"{key}_{POOL_KEY[mode]}{self.pool_size}": value for key, value in metrics.items() for mode in self.pool_modes}
        else:
            for mode in self.pool_modes:
                metrics |= recall_at_k(image, text, self.ks, self.pool_size, pool_repeats=self.pool_repeats, pool_mode=mode, image_of_row=image_ids)
        metrics["pool_size"] = float(pool_size)
        return metrics

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_validation_epoch_end(trainer, pl_module)
        self._measure_train_subset(trainer, pl_module)

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_test_epoch_end(trainer, pl_module)
        self._measure_train_subset(trainer, pl_module)  # so a test before training has the initial train R@k too

    def _measure_train_subset(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.train_subset > 0 and not trainer.sanity_checking:
            image, text, image_ids = self._embed_train_subset(trainer, pl_module)
            self.log_scalars(pl_module, "train/retrieval", self.measure("train", image, text, image_ids))

    def _embed_train_subset(self, trainer: L.Trainer, pl_module: L.LightningModule) -> tuple[Tensor, Tensor, Tensor]:
        """Embeddings of the fixed training subset, as the validation steps compute them (eval mode, no grad)."""
        subset_loader = trainer.datamodule.subset_loader  # needs_data: checked at start-up
        parts: dict[str, list[Tensor]] = {"image": [], "text": [], "image_id": []}
        with torch.no_grad(), trainer.precision_plugin.forward_context():
            for batch in subset_loader("train", self.train_subset):
                batch = move_data_to_device(batch, pl_module.device)
                embeddings = pl_module.embed(batch)
                parts["image"].append(embeddings["image"].float())
                parts["text"].append(embeddings["text"].float())
                parts["image_id"].append(batch["image_id"])
        return tuple(torch.cat(parts[name]) for name in ("image", "text", "image_id"))
