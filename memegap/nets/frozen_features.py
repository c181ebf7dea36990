"""Features of frozen pretrained towers that pip installs (offline): the baselines and side inputs of
the studies (memes likes, posts)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from memegap.batch import float_images


@torch.no_grad()
def image_features(*image_sets: Sequence, batch_size: int = 64) -> np.ndarray:
    """EfficientNet-Lite0's 1280 ImageNet features (no training) of uint8 images N×3×S×S: each set a
    tensor or a store view (StoredImages), read batch_size images at a time; the sets' rows one after
    the other, the tower loaded once."""
    from memegap.nets.towers import EfficientNetLite0

    tower = EfficientNetLite0().eval()
    return torch.cat([tower(float_images(images[k : k + batch_size])) for images in image_sets for k in range(0, len(images), batch_size)]).numpy()


@torch.no_grad()
def text_features(texts: list[str], batch_size: int = 128) -> np.ndarray:
    """MiniLM-L6's 384-d mean-pooled sentence embeddings of the texts."""
    from memegap.nets.towers import MiniLMText

    tower = MiniLMText(max_length=64).eval()
    return torch.cat([tower(texts[k : k + batch_size]) for k in range(0, len(texts), batch_size)]).numpy()
