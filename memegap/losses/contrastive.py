"""Contrastive losses for paired embeddings (open_clip's ClipLoss, single process)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class InfoNCELoss(nn.Module):
    """Symmetric cross-entropy over the N×N similarity matrix of a batch (CLIP / InfoNCE).

    forward(image, text, logit_scale): image and text are N×d embeddings (normalised inside), the i-th
    image matches the i-th text, logit_scale is log(1/temperature). Returns the mean of the
    image→text and text→image cross-entropies (a scalar, nats).
    """

    def forward(self, image: Tensor, text: Tensor, logit_scale: Tensor) -> Tensor:
        image = nn.functional.normalize(image, dim=1)
        text = nn.functional.normalize(text, dim=1)
        logits = logit_scale.exp() * image @ text.T
        targets = torch.arange(image.shape[0], device=image.device)
        return (nn.functional.cross_entropy(logits, targets) + nn.functional.cross_entropy(logits.T, targets)) / 2
