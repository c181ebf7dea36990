"""Labelled images (read from the image store when indexed, or a tensor), as every classification source (CIFAR-100, image sentiment,
posts) hands them to its loaders, with class balancing by loss weights or by sampling. Loaders deliver uint8; a source's
augmentations and standardisation run on the batch, on the model's device (`LabelledImageDataModule.device_images`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from memegap.batch import float_images
from memegap.data.sampling import SplitLoaders, make_loader
from memegap.errors import UserError

# none: every sample counts the same; weights: the loss weighs sample i by N / (C · count of its class)
# (scikit-learn's "balanced"); sampler: training batches draw classes equally often (with replacement).
BALANCE = ("none", "weights", "sampler")


class LabelledImages(Dataset):
    """Images as uint8 3×S×S items with int labels.

    Item (keys as memegap.batch.SCHEMA): {"image": uint8 3×S×S, "label": int, "id": str}, and "weight": float
    when `weights` (N) is given. Augmentations are not applied here: the data module applies them to the batch
    on the device (`LabelledImageDataModule.device_images`).
    """

    def __init__(
        self,
        ids: Sequence[str],
        images: Sequence[Tensor],  # uint8 3×S×S each: a StoredImages, or a uint8 N×3×S×S tensor
        labels: Tensor,
        weights: Tensor | None = None,
    ) -> None:
        if not len(ids) == len(images) == len(labels) == (len(weights) if weights is not None else len(ids)):
            raise ValueError(f"need as many ids, images, labels and weights: {len(ids)}, {len(images)}, {len(labels)}")
        self.ids, self.images, self.labels, self.weights = list(ids), images, labels.long(), weights

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict:
        item = {"image": self.images[index], "label": int(self.labels[index]), "id": self.ids[index]}
        if self.weights is not None:
            item["weight"] = float(self.weights[index])
        return item


class LabelledImageDataModule(SplitLoaders, L.LightningDataModule):
    """What the classification sources share: `class_names` and `num_classes`, class balancing, and
    loaders over `self.datasets` ({split: LabelledImages}, filled by the subclass's setup), and the images'
    float step on the device: the subclass's `train_augment` (training batches only) and `standardise`.
    Settings are the subclass's hparams: batch_size, eval_batch_size, num_workers, seed, balance."""

    batch_keys = ("image", "label", "id", "weight")  # memegap.batch.SCHEMA; "weight" when balanced by weights

    def __init__(self, balance: str) -> None:
        super().__init__()
        if balance not in BALANCE:
            raise UserError(f"data.balance must be one of {list(BALANCE)}, got {balance!r}")
        self.class_names: list[str] = []
        self.datasets: dict[str, LabelledImages] = {}
        self._sampler_weights: Tensor | None = None
        self.train_augment: list[Callable[[Tensor], Tensor]] = []  # float 3×S×S -> 3×S×S, drawn anew for each training image
        self.standardise: Callable[[Tensor], Tensor] | None = None  # float N×3×S×S -> N×3×S×S, every split

    def device_images(self, images: Tensor, training: bool) -> Tensor:
        """A batch's images as the model reads them: uint8 N×3×S×S (on the model's device) -> float32 in [0, 1]
        (batch.float_images), then for a training batch the augmentations, each image its own random draw (a
        torchvision v2 transform given the whole batch draws once: every image flipped or none), then the
        standardisation. Unchanged (uint8, converted by the model) when the source has neither."""
        augment = self.train_augment if training else []
        if not augment and self.standardise is None:
            return images
        images = float_images(images)
        if augment:
            compose = v2.Compose(augment)
            images = torch.stack([compose(image) for image in images])
        return self.standardise(images) if self.standardise is not None else images

    def on_after_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        """Lightning's hook, called on the model's device after the batch moved there."""
        training = self.trainer is not None and self.trainer.training
        return {**batch, "image": self.device_images(batch["image"], training)}

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def training_weights(self, labels: Tensor, confidence: Tensor | None = None) -> Tensor | None:
        """The per-sample loss weights of the training split (None when all would be 1), and, for
        balance="sampler", the sampler's weights (1 / class count) kept for train_dataloader."""
        counts = torch.bincount(labels, minlength=self.num_classes).double().clamp(min=1)
        balanced = len(labels) / (self.num_classes * counts[labels])
        self._sampler_weights = balanced if self.hparams.balance == "sampler" else None
        weights = balanced if self.hparams.balance == "weights" else None
        if confidence is not None:
            weights = confidence.double() if weights is None else weights * confidence.double()
        return None if weights is None else weights.float()

    def _loader(self, split: str) -> DataLoader:
        training = split == "train"
        batch_size = self.hparams.batch_size if training else self.hparams.eval_batch_size
        sample_weights = self._sampler_weights if training else None
        return make_loader(self.datasets[split], batch_size, self.hparams.num_workers, training, self.hparams.seed, sample_weights=sample_weights)
