"""EmbeddingExport: a run's validation and test embeddings as a result, not only as the numbers measured on them.

At the end of each validation epoch (so the file holds the last epoch's) and of the test it writes
`<run dir>/embeddings/<split>.parquet`, one row per item and modality, the format below; on the test of the
trained model it also sends the rows to W&B as a table (the projector panel reads its `vector` column) and,
when the W&B logger logs the model (`logger.wandb.log_model`), the Parquet files as the artifact
`embeddings-<run id>`. A test of the untrained model (test_before_fit) writes `test_before_fit.parquet`.

The format, which memegap-geometry reads and anyone can write (docs/configuration.md#embeddings):
  id (string)        the row's id in its source (batch key "id"), or "<split>/<position>" when the data gives none
  split (string)     val or test
  modality (string)  image, text (a dual encoder), image (a classifier's features, a likes model's embedding), ...
  position (int64)   the item's place in the split; the rows of the modalities with one position are one pair
  image_id (int64)   the image the row shows (several captions of one image share it); null when the data has none
  vector             fixed-size list of float32, d: the embedding as the model returns it
  label, bin (int64), likes (float64)   where the split has them
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
from memegap.utils.io import atomic_path

log = logging.getLogger(__name__)

LABEL_KEYS = {"label": pa.int64(), "bin": pa.int64(), "likes": pa.float64()}


def embedding_table(split: str, embeddings: dict[str, Tensor], targets: dict[str, Tensor], ids: Sequence[str] | None) -> pa.Table:
    """The rows of one split: for each modality ({name: N×d}), N rows in position order (format: module docstring)."""
    count = len(next(iter(embeddings.values())))
    ids = list(ids) if ids is not None else [f"{split}/{position}" for position in range(count)]
    columns: dict[str, list] = {"id": [], "split": [], "modality": [], "position": [], "image_id": []}
    labels = {name: targets[name].cpu().numpy() for name in LABEL_KEYS if name in targets and targets[name].ndim == 1}
    for name in labels:
        columns[name] = []
    image_ids = targets["image_id"].cpu().numpy() if "image_id" in targets else None
    vectors = []
    for modality, values in embeddings.items():
        columns["id"] += ids
        columns["split"] += [split] * count
        columns["modality"] += [modality] * count
        columns["position"] += range(count)
        columns["image_id"] += image_ids.tolist() if image_ids is not None else [None] * count
        for name, values_of_label in labels.items():
            columns[name] += values_of_label.tolist()
        vectors.append(values.detach().float().cpu().numpy())
    stacked = np.concatenate(vectors).astype(np.float32)
    arrays = {name: pa.array(values, type=LABEL_KEYS.get(name, pa.int64() if name in ("position", "image_id") else pa.string()))
              for name, values in columns.items()}
    arrays["vector"] = pa.FixedSizeListArray.from_arrays(pa.array(stacked.reshape(-1)), stacked.shape[1])
    order = ["id", "split", "modality", "position", "image_id", "vector", *labels]
    return pa.table({name: arrays[name] for name in order})


def read_embeddings(path: str | Path) -> dict[str, np.ndarray]:
    """{modality: N×d float32} of an exported split, rows in position order (the inverse of embedding_table)."""
    table = pq.read_table(path).to_pandas()
    return {modality: np.stack(rows.sort_values("position")["vector"].to_numpy()).astype(np.float32) for modality, rows in table.groupby("modality", sort=False)}


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
