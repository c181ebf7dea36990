"""Image sentiment (the Whale & Jaguar challenge, report 003): the image-sentiment-polarity table of
CrowdFlower's "Data for Everyone", 15,613 image URLs each labelled with one of five levels.

Table: the original CSV (or parquet) with its columns `_unit_id`, `imageurl`,
`which_of_these_sentiment_scores_does_the_above_image_fit_into_best`, its `:confidence` column and
`_trusted_judgments`; CR line endings and quoted fields holding line breaks are read as they are.
Images come from the project's downloader, which fills the table's `image_path` and
`download_status` columns:

    memegap-collect download --table image-sentiment-polarity.csv --url-column imageurl

and are decoded once into the packed image store. A row whose download failed, or whose file cannot
be read, is counted and left out; a bad label or confidence is an error naming the row (or, with
`bad_rows=skip`, a counted skip).

Split: stratified 80/15/5 as the challenge, but shuffled within each class by a fixed `split_seed`
(the challenge cut each class in file order), computed on every labelled row before any filter, so a
row keeps its split when more images download or `min_confidence` changes.

Batch: {"image": float N×3×S×S in [0, 1], "label": int64 N (0 = Highly negative … 4 = Highly
positive), "id": list[str] (the `_unit_id`), "weight": N (training only, when weighted)}.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch
from torchvision.transforms import v2

from memegap.utils.tables import read_user_columns, resolve_path
from memegap.data.image_store import ImageStore, table_store_name
from memegap.data.labelled import LabelledImageDataModule, LabelledImages
from memegap.data.splits import SPLITS, evenly_spaced, stratified_split
from memegap.errors import UserError

log = logging.getLogger(__name__)

SENTIMENT_COLUMN = "which_of_these_sentiment_scores_does_the_above_image_fit_into_best"
CONFIDENCE_COLUMN = f"{SENTIMENT_COLUMN}:confidence"
REQUIRED_COLUMNS = ("_unit_id", "imageurl", SENTIMENT_COLUMN, CONFIDENCE_COLUMN, "_trusted_judgments")
DOWNLOAD_COLUMNS = ("image_path", "download_status")
CLASSES = ("Highly negative", "Negative", "Neutral", "Positive", "Highly positive")
BAD_ROWS = ("error", "skip")


@dataclass(frozen=True)
class SentimentRow:
    unit_id: str
    url: str
    label: int  # index into CLASSES
    confidence: float  # the annotators' agreement, in [0, 1]
    judgments: int
    image: Path | None  # the downloaded file, None when there is none
    download_status: str | None


@dataclass(frozen=True)
class SentimentTable:
    rows: list[SentimentRow]
    bad_rows: int  # skipped (always 0 with bad_rows="error")
    has_images: bool  # the table has an image_path column (memegap-collect download ran on it)


def read_sentiment_table(path: str | Path, bad_rows: str = "error") -> SentimentTable:
    """The table's rows. A bad label or confidence raises a UserError naming the file, the data row
    (1 = first) and the column, or with bad_rows="skip" is skipped and counted."""
    path = Path(path)
    columns = read_user_columns(path, REQUIRED_COLUMNS, optional=DOWNLOAD_COLUMNS, hint=" (the image-sentiment-polarity table's own columns)")
    label_of = {name.lower(): index for index, name in enumerate(CLASSES)}
    rows, skipped = [], 0
    for index in range(len(columns["_unit_id"])):
        cell = {name: values[index] for name, values in columns.items()}
        try:
            label = label_of.get(str(cell[SENTIMENT_COLUMN] or "").strip().lower())
            if label is None:
                raise ValueError(SENTIMENT_COLUMN, f"{cell[SENTIMENT_COLUMN]!r} is not one of {list(CLASSES)}")
            confidence = number(cell, CONFIDENCE_COLUMN)
            if not 0.0 <= confidence <= 1.0:
                raise ValueError(CONFIDENCE_COLUMN, f"{confidence} is not in [0, 1]")
            judgments = int(number(cell, "_trusted_judgments"))
        except ValueError as error:
            column, reason = error.args
            if bad_rows == "skip":
                skipped += 1
                continue
            raise UserError(f"{path}: data row {index + 1} (_unit_id {cell['_unit_id']}), column {column}: {reason}; "
                            f"fix the row or set data.bad_rows=skip") from None
        stored = cell.get("image_path")
        rows.append(SentimentRow(str(cell["_unit_id"]), cell["imageurl"] or "", label, confidence, judgments,
                                 resolve_path(path, stored) if stored else None, cell.get("download_status")))
    return SentimentTable(rows, skipped, "image_path" in columns)


def number(cell: dict, column: str) -> float:
    """The cell as a float (parquet numbers, or CSV text), else ValueError(column, reason)."""
    try:
        return float(cell[column])
    except (TypeError, ValueError):
        raise ValueError(column, f"{cell[column]!r} is not a number") from None


class ImageSentimentDataModule(LabelledImageDataModule):
    """Five sentiment levels from images; the annotators' confidence as a filter or a loss weight.

    min_confidence: leave out rows whose label confidence is below it (0 keeps all).
    confidence_weight: weigh each training sample's loss by its confidence.
    balance: class imbalance (Positive 8,551 vs Highly negative 283) by loss weights, a balanced
        sampler, or none (memegap.data.labelled.BALANCE).
    """

    def __init__(
        self,
        table: str = "data/image_sentiment/image-sentiment-polarity.csv",
        image_size: int = 224,
        min_confidence: float = 0.0,
        confidence_weight: bool = False,
        split_fractions: tuple[float, float, float] = (0.8, 0.15, 0.05),
        split_seed: int = 0,
        balance: str = "weights",
        bad_rows: str = "error",
        augment: bool = True,
        batch_size: int = 32,
        eval_batch_size: int = 128,
        num_workers: int = 0,
        store_workers: int | None = None,
        max_per_split: int | None = None,
        seed: int = 0,
        store_dir: str = "data/store",
    ) -> None:
        super().__init__(balance)
        if bad_rows not in BAD_ROWS:
            raise UserError(f"data.bad_rows must be one of {list(BAD_ROWS)}, got {bad_rows!r}")
        if abs(sum(split_fractions) - 1.0) > 1e-6:
            raise UserError(f"data.split_fractions must sum to 1, got {list(split_fractions)}")
        self.save_hyperparameters()
        self.class_names = list(CLASSES)
        self.counts: Counter = Counter()  # rows read, and rows left out by reason (filled by setup)

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        table = Path(self.hparams.table)
        read = read_sentiment_table(table, self.hparams.bad_rows)
        rows, bad = read.rows, read.bad_rows
        if not read.has_images:
            raise UserError(f"{table}: no image_path column; download the images first: "
                            f"memegap-collect download --table {table} --url-column imageurl")
        split_of_row = stratified_split([row.label for row in rows], tuple(self.hparams.split_fractions), self.hparams.split_seed)
        self.counts = Counter(rows=len(rows) + bad, bad_rows=bad)
        downloaded = [row for row in rows if row.image is not None and row.download_status in (None, "ok")]
        self.counts["not_downloaded"] = len(rows) - len(downloaded)
        store = ImageStore(self.hparams.store_dir, table_store_name("image_sentiment", table), self.hparams.image_size)
        store.ensure([(row.unit_id, row.image) for row in downloaded], self.hparams.store_workers)
        readable = {record["key"] for record in store.rows() if record["status"] == "ok"}
        self.counts["unreadable"] = len(downloaded) - len(readable)
        self.train_augment = [v2.RandomHorizontalFlip()] if self.hparams.augment else []  # our choice; the challenge names none
        for split in SPLITS:
            members = [row for row, name in zip(rows, split_of_row) if name == split and row.unit_id in readable]
            kept = [row for row in members if row.confidence >= self.hparams.min_confidence]
            self.counts["below_min_confidence"] += len(members) - len(kept)
            kept = evenly_spaced(kept, self.hparams.max_per_split)
            labels = torch.tensor([row.label for row in kept], dtype=torch.int64)
            confidence = torch.tensor([row.confidence for row in kept]) if self.hparams.confidence_weight else None
            weights = self.training_weights(labels, confidence) if split == "train" else None
            ids = [row.unit_id for row in kept]
            self.datasets[split] = LabelledImages(ids, store.view(ids), labels, weights)
        left_out = {reason: self.counts[reason] for reason in ("bad_rows", "not_downloaded", "unreadable", "below_min_confidence") if self.counts[reason]}
        log.info(
            "image sentiment: %d rows in %s; left out: %s; %s",
            self.counts["rows"], table, ", ".join(f"{count} {reason.replace('_', ' ')}" for reason, count in left_out.items()) or "none",
            ", ".join(f"{split} {len(self.datasets[split])}" for split in SPLITS),
        )
