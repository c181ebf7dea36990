"""A user's own labelled images from a table: CSV, Parquet or JSONL (`data=labelled_table`), for the classifiers.

Each row names an image (`data.image_column`: a path relative to the table's folder, or absolute) and its
class (`data.label_column`: any value; a number is read as its text). Classes: `data.classes`, a list, fixes
them and their order (rows of other values are counted and left out); null takes the values the table has,
sorted. Splits: an optional `split` column (`data.split_column`: train / val / test per row, used as it is);
without it, an optional `group` column (`data.group_column`: a group never straddles two splits) splits by
group in `data.split_fractions`; without either the rows are split stratified by class (`data.split_seed`).

Bad input is counted and listed, never fatal (`counts`, logged as data/<count>): rows without an image or a
class, rows of other classes, and missing or unreadable image files (the store's rows.parquet says which
and why). A missing column names the table, the column and the columns it has; a bad split value names the
row; a split left with no image is one line saying so. The table is read at start-up (`check_inputs`), so
such a mistake refuses the start before a run dir is made.

A likes table (id, created_at, likes, text, image_path) is `data=memes` already: it reads memegap's own
layout as well as the Reddit one (memegap/data/memes_table.py), so it is not repeated here.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import torch
from torchvision.transforms import v2

from memegap.data.image_store import pack_table_images
from memegap.data.labelled import LabelledImageDataModule, LabelledImages
from memegap.data.splits import SPLITS, evenly_spaced, split_groups, stratified_split
from memegap.errors import UserError
from memegap.utils.tables import read_user_columns, resolve_path

log = logging.getLogger(__name__)


class LabelledRow(NamedTuple):
    """One usable row: its image file, class value, group, split (None: the table has no split column)
    and data row number (1 = first; the row's `id`)."""

    path: Path
    label: str
    group: str | None
    split: str | None
    number: int


def cell_text(value) -> str:
    """A cell as text: 3 and 3.0 read as "3" (Parquet numbers), None as ""."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


class LabelledTableDataModule(LabelledImageDataModule):
    """Labelled images of a user's table, served like the built-in classification sources (same store,
    splits, class balancing, batch keys, device augmentation)."""

    def __init__(
        self,
        table: str,
        image_column: str = "image",
        label_column: str = "label",
        classes: Sequence[str] | None = None,
        split_column: str = "split",
        group_column: str = "group",
        image_size: int = 224,
        split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
        split_seed: int = 0,
        balance: str = "none",
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
        if abs(sum(split_fractions) - 1.0) > 1e-6:
            raise UserError(f"data.split_fractions must sum to 1, got {list(split_fractions)}")
        if classes is not None and len(set(map(str, classes))) != len(classes):
            raise UserError(f"data.classes names a class twice: {list(classes)}")
        self.save_hyperparameters()
        self.counts: Counter = Counter()
        self.rows: list[LabelledRow] | None = None  # read by check_inputs or setup

    def check_inputs(self) -> None:
        """The table, its columns and split values, checked at start-up (before a run dir is made); the rows
        read are kept for setup."""
        self.rows = self.read_rows()

    def read_rows(self) -> list[LabelledRow]:
        """Every usable row of the table; sets `class_names` and counts the rows left out."""
        hp = self.hparams
        table = Path(hp.table)
        hint = "; name the columns with data.image_column and data.label_column"
        columns = read_user_columns(table, (hp.image_column, hp.label_column), hint=hint, optional=(hp.split_column, hp.group_column))
        splits, groups = columns.get(hp.split_column), columns.get(hp.group_column)
        given = None if hp.classes is None else [str(name) for name in hp.classes]
        self.counts = Counter()
        rows = []
        for index, (image, label) in enumerate(zip(columns[hp.image_column], columns[hp.label_column])):
            label = cell_text(label)
            if cell_text(image) == "":
                self.counts["rows_without_image"] += 1
                continue
            if label == "":
                self.counts["rows_without_label"] += 1
                continue
            if given is not None and label not in given:
                self.counts["rows_of_other_classes"] += 1
                continue
            split = None if splits is None else cell_text(splits[index]).lower()
            if split is not None and split not in SPLITS:
                raise UserError(f"{table}: data row {index + 1}, column {hp.split_column}: {splits[index]!r} is not one of "
                                f"{', '.join(SPLITS)}; fix the row, or name another column with data.split_column")
            group = None if groups is None else cell_text(groups[index])
            rows.append(LabelledRow(resolve_path(table, cell_text(image)), label, group, split, index + 1))
        if not rows:
            raise UserError(f"{table}: no row has both an image and a class{' of data.classes' if given else ''} ({dict(self.counts)}); "
                            "check data.image_column, data.label_column and data.classes")
        self.class_names = given if given is not None else sorted({row.label for row in rows})
        if len(self.class_names) < 2:
            raise UserError(f"{table}: column {hp.label_column} holds one class ({self.class_names[0]!r}); a classifier needs at least two")
        return rows

    def _split_rows(self, rows: list[LabelledRow]) -> list[LabelledRow]:
        """The rows with their split: the table's split column, else by group, else stratified by class."""
        hp = self.hparams
        if rows[0].split is not None:
            return rows
        if rows[0].group is not None:
            split_of = split_groups([row.group for row in rows], tuple(hp.split_fractions))
        else:
            index_of = {name: index for index, name in enumerate(self.class_names)}
            split_of = stratified_split([index_of[row.label] for row in rows], tuple(hp.split_fractions), hp.split_seed)
        return [row._replace(split=split) for row, split in zip(rows, split_of)]

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        hp = self.hparams
        rows = self._split_rows(self.rows if self.rows is not None else self.read_rows())
        store, readable, unreadable = pack_table_images("labelled", hp.table, sorted({row.path for row in rows}), hp.image_size, hp.store_dir, hp.store_workers)
        if unreadable:
            self.counts["unreadable_images"] = unreadable
            self.counts["rows_of_unreadable_images"] = sum(str(row.path) not in readable for row in rows)
        index_of = {name: index for index, name in enumerate(self.class_names)}
        self.train_augment = [v2.RandomHorizontalFlip()] if hp.augment else []  # ours, as the other classification sources
        for split in SPLITS:
            members = evenly_spaced([row for row in rows if row.split == split and str(row.path) in readable], hp.max_per_split)
            if not members:
                raise UserError(f"{hp.table}: the {split} split has no readable image ({dict(self.counts)}); "
                                "give the table more rows, a split column, or other data.split_fractions")
            labels = torch.tensor([index_of[row.label] for row in members], dtype=torch.int64)
            weights = self.training_weights(labels) if split == "train" else None
            self.datasets[split] = LabelledImages([str(row.number) for row in members], store.view([str(row.path) for row in members]), labels, weights)
            self.counts[f"{split}_images"] = len(members)
        log.info("labelled images from %s: %d classes; %s", hp.table, self.num_classes, dict(self.counts))
