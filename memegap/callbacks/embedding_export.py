"""EmbeddingExport: a run's validation and test embeddings as a result, not only as the numbers measured on them.

At the end of each validation epoch (so the file holds the last epoch's) and of the test it writes
`<run dir>/embeddings/<split>.parquet`, one row per item and modality (the format: memegap/utils/embedding_file.py,
docs/configuration.md#embeddings; memegap-geometry reads it); on the test of the
trained model it also sends the rows to W&B as a table (the projector panel reads its `vector` column) and,
when the W&B logger logs the model (`logger.wandb.log_model`), the Parquet files as the artifact
`embeddings-<run id>`. A test of the untrained model (test_before_fit) writes `test_before_fit.parquet`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from torch import Tensor

from memegap.callbacks.collect import EmbeddingCollector, is_before_fit
from memegap.callbacks.log_media import log_artifact, log_table
from memegap.utils.embedding_file import embedding_table
from memegap.utils.io import atomic_path

log = logging.getLogger(__name__)


class EmbeddingExport(EmbeddingCollector):
    """Writes the embeddings of `splits` (val, test) to `<run dir>/embeddings/<split>.parquet`; the test rows go
    to W&B as the table `test/embeddings` (at most `wandb_rows` rows of each modality, evenly spread; a thumbnail
    per image row where the images are at most `thumbnail_px` pixels). `splits: []` writes nothing."""

    def __init__(self, splits: Sequence[str] = ("val", "test"), wandb_rows: int = 10_000, thumbnail_px: int = 64) -> None:
        super().__init__()
        unknown = sorted(set(splits) - {"val", "test"})
        if unknown:
            raise ValueError(f"callbacks.embedding_export.splits: {unknown} are not val or test")
        self.splits, self.wandb_rows, self.thumbnail_px = tuple(splits), wandb_rows, thumbnail_px

    def on_embeddings(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str, embeddings: dict[str, Tensor], targets: dict[str, Tensor]) -> None:
        if stage not in self.splits or not trainer.is_global_zero:
            return
        name = "test_before_fit" if is_before_fit(trainer) else stage
        table = embedding_table(stage, embeddings, targets, self.row_ids)
        path = Path(trainer.default_root_dir) / "embeddings" / f"{name}.parquet"
        with atomic_path(path) as temporary:
            pq.write_table(table, temporary)
        if name == "test":
            log.info("Embeddings: %s rows (%s) in %s, %.1f MB", f"{table.num_rows:,}", ", ".join(embeddings), path, path.stat().st_size / 1e6)
            self._to_wandb(trainer, table)

    def _to_wandb(self, trainer: L.Trainer, table: pa.Table) -> None:
        frame = table.to_pandas()
        kept = []
        for _, rows in frame.groupby("modality", sort=False):
            chosen = np.unique(np.linspace(0, len(rows) - 1, min(self.wandb_rows, len(rows))).round().astype(int))
            kept.append(rows.iloc[chosen])
        log_table(trainer, "test/embeddings", kept, self._thumbnails(trainer))
        folder = Path(trainer.default_root_dir) / "embeddings"
        log_artifact(trainer, "embeddings", "embeddings", sorted(folder.glob("*.parquet")))

    def _thumbnails(self, trainer: L.Trainer):
        """position -> uint8 3×S×S of the test split's image, or None where the images are larger than thumbnail_px."""
        dataset = getattr(getattr(trainer, "datamodule", None), "datasets", {}).get("test")
        if dataset is None or len(dataset) == 0:
            return None
        first = dataset[0].get("image")
        if first is None or first.shape[-1] > self.thumbnail_px:
            return None
        return lambda position: dataset[position]["image"]
