"""Labelled images (read from the image store when indexed, or a tensor), as every classification source (CIFAR-100, image sentiment) hands
them to its loaders, with class balancing by loss weights or by sampling."""

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
    """Images as one uint8 tensor N×3×S×S with int labels.

    Item (keys as memegap.batch.SCHEMA): {"image": uint8 3×S×S, or with `transforms` float (in [0, 1],
    then the transforms in order, per item on the CPU), "label": int, "id": str},
    and "weight": float when `weights` (N) is given.
    """

    def __init__(
        self,
        ids: Sequence[str],
        images: Sequence[Tensor],  # uint8 3×S×S each: a StoredImages, or a uint8 N×3×S×S tensor
        labels: Tensor,
        transforms: Sequence[Callable[[Tensor], Tensor]] = (),
        weights: Tensor | None = None,
    ) -> None:
        if not len(ids) == len(images) == len(labels) == (len(weights) if weights is not None else len(ids)):
            raise ValueError(f"need as many ids, images, labels and weights: {len(ids)}, {len(images)}, {len(labels)}")
        self.ids, self.images, self.labels, self.weights = list(ids), images, labels.long(), weights
        self.transform = v2.Compose(list(transforms)) if transforms else None

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict:
        image = self.images[index]
        item = {"image": self.transform(float_images(image)) if self.transform else image, "label": int(self.labels[index]), "id": self.ids[index]}
        if self.weights is not None:
            item["weight"] = float(self.weights[index])
        return item


class LabelledImageDataModule(SplitLoaders, L.LightningDataModule):
    """What the classification sources share: `class_names` and `num_classes`, class balancing, and
    loaders over `self.datasets` ({split: LabelledImages}, filled by the subclass's setup).
    Settings are the subclass's hparams: batch_size, eval_batch_size, num_workers, seed, balance."""

    batch_keys = ("image", "label", "id", "weight")  # memegap.batch.SCHEMA; "weight" when balanced by weights

    def __init__(self, balance: str) -> None:
        super().__init__()
        if balance not in BALANCE:
            raise UserError(f"data.balance must be one of {list(BALANCE)}, got {balance!r}")
        self.class_names: list[str] = []
        self.datasets: dict[str, LabelledImages] = {}
        self._sampler_weights: Tensor | None = None

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
