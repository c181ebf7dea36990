"""Image–text pairs (images read from the image store when indexed), as every paired data source hands them to its loaders."""

from __future__ import annotations

from collections.abc import Sequence

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, Subset

from memegap.data.sampling import SplitLoaders, make_loader
from memegap.data.splits import evenly_spaced
from memegap.errors import UserError

# Prompts of the pictogram sources (Twemoji, ARASAAC), by language: "A picture of {name}".
PROMPTS = {"en": "A picture of {name}", "es": "Una imagen de {name}"}


class ImageTextPairs(Dataset):
    """Pairs with images as one uint8 tensor M×3×S×S (read from the image store).

    Item (keys as memegap.batch.SCHEMA): {"image": float 3×S×S in [0, 1], "text": str, "image_id": int
    (the pair's image: its row of `images`), "id": str}. `image_rows` (one per pair) lets several texts
    share an image (COCO's 5 captions); None: pair i is image i. `groups` (one key per pair: the base emoji, the concept) lets a
    sampler keep a group together.
    """

    def __init__(
        self, ids: Sequence[str], texts: Sequence[str], images: Sequence[torch.Tensor], groups: Sequence[str], image_rows: Sequence[int] | None = None
    ) -> None:
        image_rows = list(range(len(images))) if image_rows is None else list(image_rows)
        if not len(ids) == len(texts) == len(image_rows) == len(groups):
            raise ValueError(f"pairs need as many ids, texts, image rows and groups: {len(ids)}, {len(texts)}, {len(image_rows)}, {len(groups)}")
        self.ids, self.texts, self.images, self.groups, self.image_rows = list(ids), list(texts), images, list(groups), image_rows

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict:
        row = self.image_rows[index]
        return {"image": self.images[row], "text": self.texts[index], "image_id": row, "id": self.ids[index]}


class PairedDataModule(SplitLoaders, L.LightningDataModule):
    """What the image–text pairs sources share: checks of the common settings, and loaders over
    `self.datasets` ({split: ImageTextPairs}, filled by the subclass's setup). Settings are the
    subclass's hparams: batch_size, eval_batch_size, num_workers, seed. `group_batches`: training
    batches keep each group's pairs together (hard negatives)."""

    group_batches = False
    batch_keys = ("image", "text", "image_id", "id")  # memegap.batch.SCHEMA

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
        return make_loader(dataset, batch_size, self.hparams.num_workers, training, self.hparams.seed, groups, sampler=self._train_sampler(dataset) if training else None)

    def _train_sampler(self, dataset: ImageTextPairs) -> Sampler | None:
        """A training sampler of the subclass's own (None: every pair once per epoch, in random order)."""
        return None

    def prompt(self, name: str) -> str:
        """The source's prompt for a name in data.language ("A picture of dog"): what its pairs' texts say."""
        return PROMPTS[self.hparams.language].format(name=name)

    def zero_shot_classes(self) -> tuple[list[str], dict[str, int]] | None:
        """For zero-shot classification: each class's words in data.language ("flags"; `prompt` makes the
        source's own prompt of them) and the class of each pair id (a pair without one is left out). None:
        the source has no classes (the default)."""
        return None

    def subset_loader(self, split: str, images: int) -> DataLoader:
        """All pairs of `images` images spread evenly over `split`, in order, in evaluation batches: a
        fixed subset to measure R@k on (the training split's, to see overfitting)."""
        dataset = self.datasets[split]
        chosen = set(evenly_spaced(sorted(set(dataset.image_rows)), images))
        rows = [index for index, row in enumerate(dataset.image_rows) if row in chosen]
        return make_loader(Subset(dataset, rows), self.hparams.eval_batch_size, 0, False, self.hparams.seed)
