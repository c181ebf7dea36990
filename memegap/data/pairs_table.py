"""A user's own image–text pairs from a table: CSV, Parquet or JSONL (`data=pairs_table`).

Each row names an image (`data.image_column`: a path relative to the table's folder, or absolute) and
its text (`data.text_column`: a caption, a word, a post). Several rows may name one image (COCO's five
captions): they share an `image_id`, training reads one of them per image per epoch
(OnePerGroupSampler, as COCO) and evaluation counts a hit when any of the image's texts is retrieved.

Splits: an optional `split` column (`data.split_column`: train / val / test per row); without it the
rows are split by group in `data.split_fractions` (memegap.data.splits.split_groups), where a group is
the optional `group` column (`data.group_column`: a concept, a person, an album: a group never straddles
two splits) or else the image, so an image's texts stay in one split. A table with a split column uses
it as it is (ours: the user's split is the truth); a row whose split is not train, val or test is an error
naming the row.

Bad input is counted and listed, never fatal (`PairsTableDataModule.counts`): rows without an image or
a text, and missing or unreadable image files (the store's rows.parquet says which and why). A missing
column names the table, the column and the columns it has.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import NamedTuple

from torch.utils.data import Sampler

from memegap.data.image_store import pack_table_images
from memegap.data.pairs import ImageTextPairs, PairedDataModule
from memegap.data.sampling import OnePerGroupSampler
from memegap.data.splits import SPLITS, evenly_spaced, split_groups
from memegap.errors import UserError
from memegap.utils.tables import read_user_columns, resolve_path

log = logging.getLogger(__name__)


class TableRow(NamedTuple):
    """One usable row of the table: its text (with the prompt), image file, group, split (None: the
    table has no split column) and data row number (1 = first; the pair's `id`)."""

    text: str
    path: Path
    group: str
    split: str | None
    number: int


class PairsTableDataModule(PairedDataModule):
    """Image–text pairs of a user's table, served like the built-in sources (same store, splits,
    samplers, batch keys, retrieval and geometry)."""

    def __init__(
        self,
        table: str,
        image_column: str = "image",
        text_column: str = "text",
        split_column: str = "split",
        group_column: str = "group",
        prompt: str = "",
        language: str = "en",
        image_size: int = 224,
        batch_size: int = 90,
        eval_batch_size: int = 256,
        num_workers: int = 0,
        store_workers: int | None = None,
        split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
        max_per_split: int | None = None,
        seed: int = 0,
        store_dir: str = "data/store",
    ) -> None:
        super().__init__(language, split_fractions)
        self.save_hyperparameters()
        self.counts: Counter = Counter()
        self.rows: list[TableRow] | None = None  # read by check_inputs or setup

    def _train_sampler(self, dataset: ImageTextPairs) -> Sampler:
        return OnePerGroupSampler(dataset.image_rows, self.hparams.seed)

    def check_inputs(self) -> None:
        """The table, its columns and split values, checked at start-up (memegap-train and -eval call it
        before a run starts), so that a wrong path or column refuses the start and leaves no run dir; the
        rows read are kept for setup."""
        self.rows = self.read_rows()

    def read_rows(self) -> list[TableRow]:
        """Every usable row of the table; counts the rows left out."""
        hp = self.hparams
        table = Path(hp.table)
        hint = "; name the columns with data.image_column and data.text_column"
        columns = read_user_columns(table, (hp.image_column, hp.text_column), hint=hint, optional=(hp.split_column, hp.group_column))
        images, texts = columns[hp.image_column], columns[hp.text_column]
        splits, groups = columns.get(hp.split_column), columns.get(hp.group_column)
        rows = []
        for index, (image, text) in enumerate(zip(images, texts)):
            if image is None or str(image).strip() == "":
                self.counts["rows_without_image"] += 1
                continue
            if text is None or str(text).strip() == "":
                self.counts["rows_without_text"] += 1
                continue
            split = None if splits is None else str(splits[index]).strip().lower()
            if split is not None and split not in SPLITS:
                raise UserError(f"{table}: data row {index + 1}, column {hp.split_column}: {splits[index]!r} is not one of "
                                f"{', '.join(SPLITS)}; fix the row, or name another column with data.split_column")
            path = resolve_path(table, str(image))
            group = str(groups[index]) if groups is not None and groups[index] is not None else str(path)
            rows.append(TableRow(hp.prompt + str(text), path, group, split, index + 1))
        if not rows:
            raise UserError(f"{table}: no row has both an image and a text ({dict(self.counts)}); check data.image_column and data.text_column")
        return rows

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        hp = self.hparams
        rows = self.rows if self.rows is not None else self.read_rows()
        if rows[0].split is None:  # no split column: by group, in split_fractions
            split_of = split_groups([row.group for row in rows], tuple(hp.split_fractions))
            rows = [row._replace(split=split) for row, split in zip(rows, split_of)]
        store, readable, unreadable = pack_table_images("pairs", hp.table, sorted({row.path for row in rows}), hp.image_size, hp.store_dir, hp.store_workers)
        if unreadable:
            self.counts["unreadable_images"] = unreadable
            self.counts["rows_of_unreadable_images"] = sum(str(row.path) not in readable for row in rows)
        for split in SPLITS:
            keys = evenly_spaced(sorted({str(row.path) for row in rows if row.split == split and str(row.path) in readable}), hp.max_per_split)
            image_of_key = {key: image for image, key in enumerate(keys)}
            members = [row for row in rows if row.split == split and str(row.path) in image_of_key]
            self.datasets[split] = ImageTextPairs([str(row.number) for row in members], [row.text for row in members], store.view(keys),
                                                  [row.group for row in members], [image_of_key[str(row.path)] for row in members])
            self.counts[f"{split}_images"], self.counts[f"{split}_pairs"] = len(keys), len(members)
        log.info("pairs from %s: %s", hp.table, dict(self.counts))
