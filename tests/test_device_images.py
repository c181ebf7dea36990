"""Images stay uint8 until the model's device: the classification sources' augmentations and standardisation run
on the batch there (LabelledImageDataModule.device_images, called by Lightning's on_after_batch_transfer), each
image its own random draw, value for value what the per-item float path on the CPU gave; every model family
embeds a uint8 batch exactly as the float batch it stands for; bf16-mixed trains on the CPU."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch
from torchvision.transforms import v2

from memegap.batch import float_images
from memegap.data.cifar100 import Cifar100DataModule
from memegap.data.labelled import LabelledImageDataModule
from memegap.models.classifier import ImageClassifier
from memegap.models.siamese_regression import SiameseRegression
from memegap.models.siamese_triplet import SiameseTriplet
from memegap.nets.backbones import CifarCNN, TorchvisionBackbone
from memegap.testing.cifar import write_cifar100


def random_part(n: int, classes: list[int], seed: int) -> tuple[np.ndarray, list[int]]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), [classes[k % len(classes)] for k in range(n)]


@pytest.fixture
def cifar(tmp_path) -> Cifar100DataModule:
    """A CIFAR release of random pictures, read with the study's augmentations, the optional crop and standardisation."""
    write_cifar100(tmp_path, {"train": random_part(60, [0, 1, 2], 0), "test": random_part(12, [0, 1, 2], 1)})
    data = Cifar100DataModule(root=str(tmp_path), download=False, val_fraction=0.2, random_crop=True, batch_size=16, eval_batch_size=16)
    data.setup()
    return data


def test_the_device_step_equals_the_per_item_float_path_value_for_value(cifar):
    """The float path before: each item float / 255, then Compose(flip, rotation, crop, normalise) on the CPU
    in the loader. With the same generator state the batch step draws the same parameters image by image."""
    images = torch.stack([cifar.datasets["train"][k]["image"] for k in range(16)])
    assert images.dtype == torch.uint8  # the loader delivers bytes
    per_item = v2.Compose([*cifar.train_augment, cifar.standardise])
    torch.manual_seed(7)
    before = torch.stack([per_item(float_images(image)) for image in images])
    torch.manual_seed(7)
    after = cifar.device_images(images, training=True)
    assert torch.equal(after, before)
    assert torch.equal(cifar.device_images(images, training=False), cifar.standardise(float_images(images)))  # eval: no augmentation


def test_each_image_draws_its_own_augmentation():
    """v2.RandomHorizontalFlip given a whole batch flips all of it or none; per image, about half are flipped."""
    data = LabelledImageDataModule("none")
    data.train_augment = [v2.RandomHorizontalFlip()]
    images = torch.randint(0, 256, (64, 3, 8, 8), dtype=torch.uint8)
    torch.manual_seed(0)
    out = data.device_images(images, training=True)
    flipped = [torch.equal(out[k], float_images(images[k]).flip(-1)) for k in range(64)]
    unchanged = [torch.equal(out[k], float_images(images[k])) for k in range(64)]
    assert all(a != b for a, b in zip(flipped, unchanged))  # each image is itself or its mirror
    assert 10 < sum(flipped) < 54  # Binomial(64, 1/2): outside this range with probability < 1e-6
    assert data.device_images(images, training=False) is images  # nothing to do: bytes stay bytes for the model


class BatchRecorder(L.Callback):
    def __init__(self) -> None:
        self.images: dict[str, torch.Tensor] = {}
        self.losses: list[float] = []

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        self.images["train"] = batch["image"]

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))

    def on_validation_batch_start(self, trainer, module, batch, batch_idx, dataloader_idx=0) -> None:
        self.images["val"] = batch["image"]


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_lightning_hands_the_steps_standardised_floats(cifar, precision):
    """Lightning calls the data module's on_after_batch_transfer: the steps receive float32 standardised images
    (mean near 0, sd near 1 over a batch of uniform random pixels); under bf16-mixed on the CPU the step runs
    inside autocast (the logits are bfloat16) and the loss is finite."""
    recorder = BatchRecorder()
    model = ImageClassifier(CifarCNN(), optimizer=torch.optim.SGD, num_classes=cifar.num_classes)
    trainer = L.Trainer(fast_dev_run=1, precision=precision, callbacks=[recorder], logger=False, enable_progress_bar=False,
                        enable_model_summary=False, accelerator="cpu")
    trainer.fit(model, datamodule=cifar)
    for split in ("train", "val"):
        images = recorder.images[split]
        assert images.dtype == torch.float32, split
        assert abs(float(images.mean())) < 0.1 and abs(float(images.std()) - 1) < 0.1, split
    assert np.isfinite(recorder.losses).all()
    if precision == "bf16-mixed":
        batch = next(iter(cifar.val_dataloader()))
        floats = cifar.device_images(batch["image"], training=False)
        with torch.no_grad():
            reference = model.head(model.embed({"image": floats})["image"])
            with torch.autocast("cpu", dtype=torch.bfloat16):
                mixed = model.head(model.embed({"image": floats})["image"])
        assert mixed.dtype == torch.bfloat16
        torch.testing.assert_close(mixed.float(), reference, atol=0.05 * float(reference.abs().max()), rtol=0.05)


def uint8_and_float(n: int = 4, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """A uint8 batch and the float batch the loaders delivered before (each item / 255 on the CPU)."""
    images = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))
    return images, torch.stack([image.float() / 255.0 for image in images])


@pytest.mark.parametrize("family", ["cifar_cnn", "resnet_classifier", "siamese_triplet", "siamese_regression"])
def test_every_image_model_embeds_bytes_as_it_embedded_floats(family):
    """Bit-identical (atol 0): the conversion is the same division, done once on the device."""
    torch.manual_seed(0)
    if family == "cifar_cnn":
        model = ImageClassifier(CifarCNN(), optimizer=torch.optim.SGD, num_classes=5)
    elif family == "resnet_classifier":
        model = ImageClassifier(TorchvisionBackbone("resnet18"), optimizer=torch.optim.SGD, num_classes=5)
    elif family == "siamese_triplet":
        model = SiameseTriplet(TorchvisionBackbone("resnet18", keep_head=True), optimizer=torch.optim.Adam, trains="all")
    else:
        model = SiameseRegression(TorchvisionBackbone("resnet18", keep_head=True), optimizer=torch.optim.Adam, trains="all")
    model.eval()
    images, floats = uint8_and_float()
    with torch.no_grad():
        if family.startswith("siamese"):
            from_bytes, from_floats = model.features(images, None), model.features(floats, None)
        else:
            from_bytes, from_floats = model.embed({"image": images})["image"], model.embed({"image": floats})["image"]
    assert torch.equal(from_bytes, from_floats)


def test_clip_embeds_bytes_as_it_embedded_floats(tiny_clip):
    from functools import partial

    from memegap.losses.contrastive import ContrastiveLoss
    from memegap.models.clip import ClipDualEncoder

    module = ClipDualEncoder(ContrastiveLoss(), partial(torch.optim.AdamW, lr=1e-2), name_or_path=str(tiny_clip)).eval()
    images, floats = uint8_and_float()
    texts = ["a cat", "a dog", "a red flag", "a smiling face"]
    with torch.no_grad():
        from_bytes, from_floats = module.embed({"image": images, "text": texts}), module.embed({"image": floats, "text": texts})
    assert torch.equal(from_bytes["image"], from_floats["image"]) and torch.equal(from_bytes["text"], from_floats["text"])
