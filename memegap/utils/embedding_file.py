"""The embeddings file: one Parquet table a split, written by every run (callbacks/embedding_export.py) and read by
memegap-geometry, the tests and anyone's own code; anyone can write it too.

One row per item and modality:
  id (string)        the row's id in its source (batch key "id"), or "<split>/<position>" when the data gives none
  split (string)     val or test
  modality (string)  image, text (a dual encoder), image (a classifier's features, a likes model's embedding), ...
  position (int64)   the item's place in the split; the rows of the modalities with one position are one pair
  image_id (int64)   the image the row shows (several captions of one image share it); null when the data has none
  vector             fixed-size list of float32, d: the embedding as the model returns it
  label, bin (int64), likes (float64)   where the split has them
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from torch import Tensor

from memegap.errors import UserError

LABEL_KEYS = {"label": pa.int64(), "bin": pa.int64(), "likes": pa.float64()}
REQUIRED_COLUMNS = ("modality", "position", "vector")


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


@dataclass(frozen=True)
class EmbeddingFile:
    """A split read back: vectors {modality: N×d float32} in position order (row i of every modality is pair i, in
    the file's order of modalities), and the first modality's image_id and label (N int64 each) where every row
    has one, else None."""

    vectors: dict[str, np.ndarray]
    image_ids: np.ndarray | None
    labels: np.ndarray | None


def read_embedding_file(path: str | Path) -> EmbeddingFile:
    """The inverse of embedding_table, checked: a file that is not Parquet, lacks a column, has modalities of other
    lengths, positions or widths, is a UserError naming the file and the fault."""
    try:
        frame = pq.read_table(path).to_pandas()
    except Exception as error:  # pyarrow raises many types for a broken file
        raise UserError(f"{path}: not a readable Parquet file ({type(error).__name__})") from None
    missing = [column for column in REQUIRED_COLUMNS if column not in frame.columns]
    if missing:
        raise UserError(f"{path}: no column {', '.join(missing)} (it has: {', '.join(frame.columns)}); the format is a memegap run's embeddings export")
    if frame.empty:
        raise UserError(f"{path}: no rows")
    parts = {name: rows.sort_values("position") for name, rows in frame.groupby("modality", sort=False)}
    (first, first_rows), *others = parts.items()
    for name, rows in others:
        if len(rows) != len(first_rows) or (rows["position"].to_numpy() != first_rows["position"].to_numpy()).any():
            raise UserError(f"{path}: the {first} and {name} rows do not pair up by position ({len(first_rows)} and {len(rows)} rows)")
    vectors = {name: np.stack(rows["vector"].to_numpy()).astype(np.float32) for name, rows in parts.items()}
    widths = {name: values.shape[1] for name, values in vectors.items()}
    if len(set(widths.values())) > 1:
        raise UserError(f"{path}: the modalities have vectors of different lengths ({', '.join(f'{name} {width}' for name, width in widths.items())})")

    def column(name: str) -> np.ndarray | None:
        return first_rows[name].to_numpy().astype(np.int64) if name in first_rows and first_rows[name].notna().all() else None

    return EmbeddingFile(vectors, column("image_id"), column("label"))
