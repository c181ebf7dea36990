"""CrossModalRetrieval: image→text and text→image R@k over the whole split and in fixed-size pools."""

from __future__ import annotations

import lightning as L
from torch import Tensor

from memegap.callbacks.collect import EmbeddingCollector
from memegap.metrics.retrieval import DEFAULT_KS, recall_at_k


class CrossModalRetrieval(EmbeddingCollector):
    """Logs `<stage>/retrieval/image_to_text_R@k` (whole split) and `..._R@k_pool<P>` (pools of P pairs,
    averaged over `pool_repeats` fixed permutations)."""

    def __init__(self, ks: tuple[int, ...] = DEFAULT_KS, pool_size: int = 90, pool_repeats: int = 10) -> None:
        super().__init__()
        self.ks, self.pool_size, self.pool_repeats = tuple(ks), pool_size, pool_repeats

    def on_embeddings(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str, embeddings: dict[str, Tensor]) -> None:
        image, text = embeddings["image"], embeddings["text"]
        metrics = recall_at_k(image, text, self.ks)
        if len(image) >= self.pool_size:
            metrics |= recall_at_k(image, text, self.ks, pool_size=self.pool_size, pool_repeats=self.pool_repeats)
        for key, value in metrics.items():
            pl_module.log(f"{stage}/retrieval/{key}", value)
