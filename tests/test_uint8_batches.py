"""Batches carry images as uint8 (a quarter of the bytes of float32 to the device); each model converts
them once at its input (memegap.batch.float_images), and the numbers are those of the float path that
the data modules delivered before (each item's image.float() / 255 on the CPU)."""

from __future__ import annotations

import torch
from hydra.utils import instantiate

from memegap.batch import float_images
from memegap.data.twemoji import TwemojiDataModule
from tests.conftest import compose_config


def test_float_images_is_the_per_item_conversion_and_leaves_floats_alone():
    images = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    assert torch.equal(float_images(images), torch.stack([image.float() / 255.0 for image in images]))
    floats = torch.rand(2, 3, 8, 8)
    assert float_images(floats) is floats


def test_the_dual_encoder_embeds_uint8_batches_as_it_embedded_float_ones(tmp_path):
    data = TwemojiDataModule(image_size=32, batch_size=6, max_per_split=12)
    data.setup()
    batch = next(iter(data.train_dataloader()))
    assert batch["image"].dtype == torch.uint8 and batch["image"].element_size() == 1
    model = instantiate(compose_config("train.yaml", ["experiment=twemoji_gap"], tmp_path).model, _convert_="all").eval()
    with torch.no_grad():
        from_uint8 = model.embed(batch)
        from_float = model.embed({**batch, "image": torch.stack([image.float() / 255.0 for image in batch["image"]])})
    assert torch.equal(from_uint8["image"], from_float["image"]) and torch.equal(from_uint8["text"], from_float["text"])
