"""CrossModalRetrieval: image→text and text→image R@k over the whole split and in fixed-size pools."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor

from memegap.callbacks.collect import EmbeddingCollector
from memegap.metrics.retrieval import DEFAULT_KS, recall_at_k


class CrossModalRetrieval(EmbeddingCollector):
    """Logs `<stage>/retrieval/image_to_text_R@k` (whole split) and `..._R@k_pool<P>` (pools of P pairs,
    averaged over `pool_repeats` fixed permutations), and `<stage>/retrieval/pool_size`, the pool size
    the pooled keys were measured with.

    A split of fewer than P pairs is still measured, in one pool of all its pairs, under the same keys
    (so a checkpoint that monitors them keeps working), with a warning that names the setting."""

    def __init__(self, ks: tuple[int, ...] = DEFAULT_KS, pool_size: int = 90, pool_repeats: int = 10) -> None:
        super().__init__()
        self.ks, self.pool_size, self.pool_repeats = tuple(ks), pool_size, pool_repeats
        self._warned: set[str] = set()

    def on_embeddings(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str, embeddings: dict[str, Tensor], targets: dict[str, Tensor]) -> None:
        image, text = embeddings["image"], embeddings["text"]
        metrics = recall_at_k(image, text, self.ks)
        pool_size = min(self.pool_size, len(image))
        if pool_size < self.pool_size:
            if stage not in self._warned:
                self._warned.add(stage)
                rank_zero_warn(
                    f"{stage} has {len(image)} pairs, fewer than callbacks.cross_modal_retrieval.pool_size={self.pool_size}: "
                    f"its _pool{self.pool_size} metrics use one pool of all {len(image)} pairs (chance R@1 = 1/{len(image)}). "
                    f"Set callbacks.cross_modal_retrieval.pool_size<={len(image)} to compare like with like."
                )
            # one pool of the whole split: the whole-split values, under the pooled keys
            metrics |= {f"{key}_pool{self.pool_size}": value for key, value in metrics.items()}
        else:
            metrics |= recall_at_k(image, text, self.ks, pool_size=self.pool_size, pool_repeats=self.pool_repeats)
        metrics["pool_size"] = float(pool_size)
        for key, value in metrics.items():
            pl_module.log(f"{stage}/retrieval/{key}", value)
