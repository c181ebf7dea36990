"""Image–text pairs held in memory, as every paired data source hands them to its loaders."""

from __future__ import annotations

from collections.abc import Sequence

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from memegap.data.sampling import SplitLoaders, make_loader
from memegap.errors import UserError

# Prompts of the pictogram sources (Twemoji, ARASAAC), by language: "A picture of {name}".
PROMPTS = {"en": "A picture of {name}", "es": "Una imagen de {name}"}


class ImageTextPairs(Dataset):
    """Pairs with images as one uint8 tensor N×3×S×S (read from the image store).

    Item: {"image": float 3×S×S in [0, 1], "text": str, "label": int (the row), "id": str}.
    `groups` (one key per pair: the base emoji, the concept) lets a sampler keep a group together.
    """

    def __init__(self, ids: Sequence[str], texts: Sequence[str], images: torch.Tensor, groups: Sequence[str]) -> None:
        if not len(ids) == len(texts) == len(images) == len(groups):
            raise ValueError(f"pairs need as many ids, texts, images and groups: {len(ids)}, {len(texts)}, {len(images)}, {len(groups)}")
        self.ids, self.texts, self.images, self.groups = list(ids), list(texts), images, list(groups)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict:
        return {"image": self.images[index].float() / 255.0, "text": self.texts[index], "label": index, "id": self.ids[index]}


class PairedDataModule(SplitLoaders, L.LightningDataModule):
    """What the image–text pairs sources share: checks of the common settings, and loaders over
    `self.datasets` ({split: ImageTextPairs}, filled by the subclass's setup). Settings are the
    subclass's hparams: batch_size, eval_batch_size, num_workers, seed. `group_batches`: training
    batches keep each group's pairs together (hard negatives)."""

    group_batches = False

    def __init__(self, language: str, split_fractions: Sequence[float]) -> None:
        super().__init__()
        if language not in PROMPTS:
            raise UserError(f"data.language must be one of {sorted(PROMPTS)}, got {language!r}")
        if abs(sum(split_fractions) - 1.0) > 1e-6:
            raise UserError(f"data.split_fractions must sum to 1, got {list(split_fractions)}")
        self.datasets: dict[str, ImageTextPairs] = {}

    def _loader(self, split: str) -> DataLoader:
        training = split == "train"
        dataset = self.datasets[split]
        batch_size = self.hparams.batch_size if training else self.hparams.eval_batch_size
        groups = dataset.groups if self.group_batches else None
        return make_loader(dataset, batch_size, self.hparams.num_workers, training, self.hparams.seed, groups)
