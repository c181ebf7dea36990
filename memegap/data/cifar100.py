"""CIFAR-100 (the CIFAR study, slides 004): 50,000 training and 10,000 test images of 32×32 px in 100
fine classes grouped into 20 coarse superclasses.

Reads the python-pickle release, `<root>/cifar-100-python/{train,test,meta}`; when that folder is
missing, torchvision's `CIFAR100(download=True)` fetches it (online), and offline the error names the
folder to put it in. Each file is checked: the image array's shape, every label in range, and every
(fine, coarse) pair against CIFAR-100's own fine → coarse mapping.

Splits: the release's test set is the test split; validation is a stratified, fixed hold-out of the
training set (`val_fraction`, 10 % by default: our choice, the study reports test accuracy only).
Preprocessing as the study: per-channel standardisation with the training split's mean and std, and
for training random horizontal flips and rotations of up to ±15°; a padded random crop as an option.

Batch: {"image": float N×3×32×32 (standardised, or in [0, 1] with standardize=false), "label": int64 N, "id": list[str]}.
"""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torchvision.transforms import v2

from memegap.data.labelled import LabelledImageDataModule, LabelledImages
from memegap.data.splits import SPLITS, evenly_spaced, stratified_split
from memegap.errors import UserError

log = logging.getLogger(__name__)

FOLDER = "cifar-100-python"
# CIFAR-100's superclass of each fine class (the release's coarse label of every image of that class).
COARSE_OF_FINE = (
    4, 1, 14, 8, 0, 6, 7, 7, 18, 3, 3, 14, 9, 18, 7, 11, 3, 9, 7, 11, 6, 11, 5, 10, 7, 6, 13, 15, 3, 15, 0, 11, 1, 10,
    12, 14, 16, 9, 11, 5, 5, 19, 8, 8, 15, 13, 14, 17, 18, 10, 16, 4, 17, 4, 2, 0, 17, 4, 18, 17, 10, 3, 2, 12, 12,
    16, 12, 1, 9, 19, 2, 10, 0, 1, 16, 12, 9, 13, 15, 13, 16, 19, 2, 4, 6, 19, 5, 5, 8, 19, 18, 1, 2, 15, 6, 0, 17, 8,
    14, 13,
)  # fmt: skip
LABELS = ("fine", "coarse")


def unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as handle:
            return pickle.load(handle, encoding="latin1")
    except FileNotFoundError:
        raise UserError(f"{path}: missing from the CIFAR-100 folder (it needs train, test and meta)") from None
    except Exception as error:  # a truncated or foreign file raises one of many types
        raise UserError(f"{path}: not a CIFAR-100 pickle ({type(error).__name__}: {error})") from None


def read_part(path: Path, num_fine: int, num_coarse: int) -> tuple[Tensor, Tensor, Tensor]:
    """One part (train or test) as images uint8 N×3×32×32, fine labels N and coarse labels N, checked."""
    part = unpickle(path)
    missing = [key for key in ("data", "fine_labels", "coarse_labels") if key not in part]
    if missing:
        raise UserError(f"{path}: no {', '.join(missing)} in this CIFAR-100 pickle")
    data = np.asarray(part["data"])
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise UserError(f"{path}: 'data' must be N×3072 (N images of 3×32×32), got shape {data.shape}")
    fine, coarse = (torch.as_tensor(np.asarray(part[key]), dtype=torch.int64) for key in ("fine_labels", "coarse_labels"))
    if not len(fine) == len(coarse) == len(data):
        raise UserError(f"{path}: {len(data)} images but {len(fine)} fine and {len(coarse)} coarse labels")
    for name, labels, count in (("fine_labels", fine, num_fine), ("coarse_labels", coarse, num_coarse)):
        bad = ((labels < 0) | (labels >= count)).nonzero().flatten()
        if len(bad):
            raise UserError(f"{path}: {name}[{int(bad[0])}] = {int(labels[bad[0]])}, not a class of 0..{count - 1} ({len(bad)} such rows)")
    if num_fine == len(COARSE_OF_FINE):
        wrong = (torch.tensor(COARSE_OF_FINE)[fine] != coarse).nonzero().flatten()
        if len(wrong):
            row = int(wrong[0])
            raise UserError(
                f"{path}: row {row} has fine label {int(fine[row])} with coarse label {int(coarse[row])}, but CIFAR-100 puts "
                f"that class in superclass {COARSE_OF_FINE[int(fine[row])]} ({len(wrong)} such rows)"
            )
    return torch.from_numpy(data.reshape(-1, 3, 32, 32).copy()), fine, coarse


def ensure_release(root: Path, download: bool) -> Path:
    """`<root>/cifar-100-python`, fetched with torchvision when it is missing and `download`."""
    folder = root / FOLDER
    if folder.is_dir():
        return folder
    hint = f"put the extracted {FOLDER} folder (train, test, meta from https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz) in {root}"
    if not download:
        raise UserError(f"no CIFAR-100 at {folder} and data.download=false: {hint}")
    from torchvision.datasets import CIFAR100

    log.info("downloading CIFAR-100 (161 MB) into %s", root)
    try:
        CIFAR100(str(root), train=True, download=True)
    except (OSError, RuntimeError) as error:  # no network (URLError is an OSError), a bad archive
        raise UserError(f"could not download CIFAR-100 ({type(error).__name__}: {error}); offline, {hint}") from None
    return folder


class Cifar100DataModule(LabelledImageDataModule):
    """CIFAR-100 with `label="fine"` (100 classes) or `"coarse"` (20 superclasses)."""

    def __init__(
        self,
        root: str = "data/cifar100",
        label: str = "fine",
        download: bool = True,
        val_fraction: float = 0.1,
        standardize: bool = True,
        augment: bool = True,
        random_crop: bool = False,
        batch_size: int = 128,
        eval_batch_size: int = 512,
        num_workers: int = 0,
        max_per_split: int | None = None,
        balance: str = "none",
        seed: int = 0,
    ) -> None:
        super().__init__(balance)
        if label not in LABELS:
            raise UserError(f"data.label must be one of {list(LABELS)}, got {label!r}")
        if not 0.0 < val_fraction < 1.0:
            raise UserError(f"data.val_fraction must be between 0 and 1, got {val_fraction}")
        self.save_hyperparameters()

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        folder = ensure_release(Path(self.hparams.root), self.hparams.download)
        meta = unpickle(folder / "meta")
        names = {key: list(meta.get(f"{key}_label_names", [])) for key in LABELS}
        if not names["fine"] or not names["coarse"]:
            raise UserError(f"{folder / 'meta'}: no fine_label_names / coarse_label_names")
        self.class_names = names[self.hparams.label]
        parts = {part: read_part(folder / part, len(names["fine"]), len(names["coarse"])) for part in ("train", "test")}
        chosen = {part: (images, fine if self.hparams.label == "fine" else coarse, fine) for part, (images, fine, coarse) in parts.items()}
        train_images, train_labels, train_fine = chosen["train"]
        split_of_image = stratified_split(train_fine.tolist(), (1.0 - self.hparams.val_fraction, self.hparams.val_fraction, 0.0), self.hparams.seed)
        rows = {split: [index for index, name in enumerate(split_of_image) if name == split] for split in ("train", "val")}
        rows = {split: evenly_spaced(indices, self.hparams.max_per_split) for split, indices in rows.items()}
        rows["test"] = evenly_spaced(list(range(len(chosen["test"][0]))), self.hparams.max_per_split)
        source = {"train": "train", "val": "train", "test": "test"}
        self.standardise = self._standardisation(train_images[rows["train"]])
        self.train_augment = [v2.RandomHorizontalFlip(), v2.RandomRotation(15)] if self.hparams.augment else []
        if self.hparams.random_crop:
            self.train_augment.append(v2.RandomCrop(32, padding=4, padding_mode="reflect"))
        for split in SPLITS:
            images, labels, _ = chosen[source[split]]
            index = torch.tensor(rows[split], dtype=torch.int64)
            ids = [f"{source[split]}/{int(k)}" for k in index]
            weights = self.training_weights(labels[index]) if split == "train" else None
            self.datasets[split] = LabelledImages(ids, images[index], labels[index], weights)
        log.info("CIFAR-100 (%s labels): %s images", self.hparams.label, ", ".join(f"{split} {len(self.datasets[split])}" for split in SPLITS))

    def _standardisation(self, train_images: Tensor) -> v2.Normalize | None:
        """Normalize(mean, std) of each channel over the training images (in [0, 1]); None when standardize is off."""
        if not self.hparams.standardize:
            return None
        total, squares = torch.zeros(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64)
        for chunk in train_images.split(4096):  # float64 sums, a chunk at a time (all 45,000 at once: 1.1 GB)
            pixels = chunk.double().div_(255.0)
            total += pixels.sum(dim=(0, 2, 3))
            squares += pixels.pow_(2).sum(dim=(0, 2, 3))
        count = train_images.shape[0] * train_images.shape[2] * train_images.shape[3]
        mean = total / count
        std = (squares / count - mean**2).clamp(min=1e-12).sqrt()
        return v2.Normalize(mean.tolist(), std.tolist())
