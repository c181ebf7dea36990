"""The batch key schema: one meaning per key, for every data module and every model.

A batch is a dict. Each data module says which keys its training and evaluation batches hold
(`batch_keys`), each model which keys it reads (`needs_batch_keys`); `check_composition` compares the
two at start-up, so that a pair of config groups that cannot work together fails in one line naming
both groups instead of with a KeyError in the first step. N is the batch size, S the image size.

The steps of a model return the same keys, for the callbacks, beside "loss", "embeddings" and "logits"
(N×C class scores): a key means the same thing in a batch and in a step's output.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor

from memegap.errors import UserError

# key -> what it holds (dtype and shape). The one place these meanings are written.
SCHEMA: dict[str, str] = {
    "image": "uint8 N×3×S×S, 0–255, as the loaders deliver it; on the device a classification source's augmentation/standardisation makes it float32 (LabelledImageDataModule.device_images), else the model converts it once (float_images) and normalises it",
    "image_id": "int64 N: which image the row shows, unique within a split; several captions of one image share it",
    "text": "list[str] of N: the row's text (a caption, a prompt, a meme's title)",
    "id": "list[str] of N: the row's own id (pair, meme, post), as in the source table",
    "label": "int64 N: a class index (CIFAR-100 class, sentiment level, post category)",
    "bin": "int64 N: a like bin (0 = fewest likes)",
    "likes": "float64 N: the raw like count",
    "target": "float32 N: the regression target (likes or log1p(likes), data.target)",
    "weight": "float32 N: a per-row loss weight (class balancing)",
    "text_features": "float32 N×F: standardised hand-made text features (data.text_features)",
}
# What a validation/test step returns beside "loss" and "embeddings", under the batch's own key names, for the
# callbacks (callbacks/collect.py gathers them): "logits" is N×C class scores, the rest mean what SCHEMA says.
STEP_TARGETS = ("label", "bin", "logits", "likes", "image_id")
# Pair and triplet batches repeat some keys for a second or third row under a prefix:
# positive_image, negative_image, other_image, other_target, other_id, other_text_features ...
PREFIXES = ("positive_", "negative_", "other_")


def float_images(images: Tensor) -> Tensor:
    """uint8 N×3×S×S (0–255) -> float32 in [0, 1] on the same device; float images pass unchanged. The one
    place the conversion is written: batches carry uint8 (a quarter of the bytes to the device) and the
    models convert at their input."""
    return images.float().div_(255.0) if images.dtype == torch.uint8 else images


def described(key: str) -> str:
    """The schema's meaning of a key, prefixed keys included; KeyError names an unknown key."""
    for prefix in ("", *PREFIXES):
        if key.startswith(prefix) and key[len(prefix):] in SCHEMA:
            return SCHEMA[key[len(prefix):]]
    raise KeyError(f"{key!r} is not a batch key of memegap.batch.SCHEMA")


def check_callbacks(datamodule: object, callbacks: dict[str, object], data_group: str) -> None:
    """Fail in one line when a callback ({config key: callback}) reads something of the data module (its
    `needs_data`: attribute names) that the data module does not have, naming both."""
    for key, callback in callbacks.items():
        missing = [name for name in getattr(callback, "needs_data", ()) if not hasattr(datamodule, name)]
        if missing:
            raise UserError(f"callbacks.{key} does not fit data={data_group}: it reads {', '.join(missing)} of the data module, "
                            f"which data={data_group} does not have; remove it (~callbacks.{key}) or choose data it fits")


def check_composition(data_keys: Iterable[str], model_keys: Iterable[str], data_group: str, model_group: str) -> None:
    """Fail in one line when the model reads keys that the data module's batches do not hold."""
    missing = sorted(set(model_keys) - set(data_keys))
    if missing:
        raise UserError(
            f"model={model_group} does not fit data={data_group}: the model reads batch keys {missing} "
            f"that data={data_group} does not provide (it gives {sorted(data_keys)}); see memegap/batch.py"
        )
