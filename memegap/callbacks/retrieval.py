"""CrossModalRetrieval: image→text and text→image R@k over the whole split and in fixed-size pools."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor

from memegap.callbacks.collect import EmbeddingCollector
from memegap.errors import UserError
from memegap.metrics.retrieval import DEFAULT_KS, POOL_KEY, POOL_MODES, recall_at_k


class CrossModalRetrieval(EmbeddingCollector):
    """Logs, in both directions (image_to_text, text_to_image), R@k, mean rank and median rank
    (`<stage>/retrieval/image_to_text_R@k`, `..._mean_rank`, `..._median_rank`) over the whole split, and
    in pools of P pairs for each of `pool_modes`:
    - "random": `..._pool<P>`, pools cut from `pool_repeats` fixed random permutations, averaged;
    - "batches": `..._batch<P>`, consecutive pairs in evaluation order (the modality-gap thesis's
      pools were its evaluation batches of 90).
    `<stage>/retrieval/pool_size` is the pool size the pooled keys were measured with.

    A split of fewer than P pairs is still measured, in one pool of all its pairs, under the same keys
    (so a checkpoint that monitors them keeps working), with a warning that names the setting."""

    def __init__(self, ks: tuple[int, ...] = DEFAULT_KS, pool_size: int = 90, pool_repeats: int = 10, pool_modes: tuple[str, ...] = POOL_MODES) -> None:
        super().__init__()
        unknown = set(pool_modes) - set(POOL_MODES)
        if unknown:
            raise UserError(f"callbacks.cross_modal_retrieval.pool_modes: {sorted(unknown)} not in {list(POOL_MODES)}")
        self.ks, self.pool_size, self.pool_repeats, self.pool_modes = tuple(ks), pool_size, pool_repeats, tuple(pool_modes)
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
            metrics |= {f"{key}_{POOL_KEY[mode]}{self.pool_size}": value for key, value in metrics.items() for mode in self.pool_modes}
        else:
            for mode in self.pool_modes:
                metrics |= recall_at_k(image, text, self.ks, pool_size=self.pool_size, pool_repeats=self.pool_repeats, pool_mode=mode)
        metrics["pool_size"] = float(pool_size)
        for key, value in metrics.items():
            pl_module.log(f"{stage}/retrieval/{key}", value)
