"""Memes with their likes (the memes thesis, 000) as a LightningDataModule: the table (read by
memegap.data.memes_table, either layout), three kinds of split (memegap.data.meme_splits), and
triplet, pair or plain batches (samplers in memegap.data.sampling; like bins and targets in
memegap.targets). Images go through the packed image store; a meme whose image is missing or
unreadable is counted and left out.

Batches (keys as memegap.batch.SCHEMA): plain items {"image": uint8 N×3×S×S, "text":
list[str], "likes": float N, "target": float N (likes or log1p(likes)), "bin": int64 N (the like bin),
"image_id": int64 N (the meme's row in its split: each meme is its own image), "id": list[str]}, and
"text_features": float N×F with data.text_features (memegap.data.meme_text; standardised with the
training split's mean and deviation); triplet
batches (training with `sampling=triplet`) add "positive_image", "negative_image", "positive_id",
"negative_id"; pair batches (`sampling=pairs`) add "other_image", "other_target", "other_id" (and
"other_text_features").
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from memegap.data.image_store import ImageStore, StoredImages, table_store_name
from memegap.data.meme_splits import SPLIT_KINDS, perceptual_groups, split_memes
from memegap.data.meme_text import check_text_features
from memegap.data.memes_table import Meme, read_memes_table
from memegap.data.sampling import PairSampler, SplitLoaders, TripletSampler, make_loader
from memegap.data.splits import SPLITS, evenly_spaced
from memegap.errors import UserError
from memegap.targets import BIN_KINDS, TARGETS, like_bin_edges, like_bins, to_target

log = logging.getLogger(__name__)

SAMPLING = ("triplet", "pairs", "items")


class MemeItems(Dataset):
    """Memes of one split: images (uint8 3×S×S each, read from the image store when indexed), likes, target, bins, texts, ids, and the
    standardised text features N×F (data.text_features; None without). An index is a row, a (meme,
    other) pair or an (anchor, positive, negative) triple of rows."""

    def __init__(self, ids: list[str], images: StoredImages, likes: np.ndarray, target: str, bins: np.ndarray, texts: list[str],
                 text_features: Tensor | None = None) -> None:
        self.ids, self.images, self.texts, self.text_features = ids, images, texts, text_features
        self.likes = torch.as_tensor(likes, dtype=torch.float64)
        self.targets = to_target(self.likes, target).float()
        self.bins = torch.as_tensor(bins, dtype=torch.int64)

    def __len__(self) -> int:
        return len(self.ids)

    def item(self, k: int) -> dict:
        item = {"image": self.images[k], "text": self.texts[k], "likes": float(self.likes[k]),
                "target": float(self.targets[k]), "bin": int(self.bins[k]), "image_id": k, "id": self.ids[k]}
        return item | ({"text_features": self.text_features[k]} if self.text_features is not None else {})

    def __getitem__(self, index: int | tuple[int, ...]) -> dict:
        if isinstance(index, tuple) and len(index) == 2:
            first, other = index
            pair = {"other_image": self.images[other], "other_target": float(self.targets[other]), "other_id": self.ids[other]}
            return self.item(first) | pair | ({"other_text_features": self.text_features[other]} if self.text_features is not None else {})
        if isinstance(index, tuple):
            anchor, positive, negative = index
            return self.item(anchor) | {
                "positive_image": self.images[positive], "positive_id": self.ids[positive],
                "negative_image": self.images[negative], "negative_id": self.ids[negative],
            }
        return self.item(index)


class MemesDataModule(SplitLoaders, L.LightningDataModule):
    """Memes with likes from `table`; see the module docstring.

    min_likes: keep memes with at least this many likes (the thesis: 750; 0 keeps all).
    split: random | chronological (oldest first) | group (templates: the table's template_url where
        given, else clusters of perceptual hashes within `phash_distance` bits).
    split_fractions: train / val / test (ours: 0.7 / 0.1 / 0.2, the thesis's 20 % test and a
        validation split it did not have); split_seed: the random split's fixed shuffle.
    bins: thesis ([750, 1000], [1001, 1500], [1501, 2000], 2001+) | quantile (`n_bins` bins of equal
        counts on the training split; for sources on another scale, such as Reddit).
    target: raw likes (the thesis) or log1p (the field's standard), used by every model and metric.
    sampling: triplet (training batches of anchor / positive / negative), pairs (a meme and another,
        for the siamese regression) or items.
    text_features: any of afinn, lda, ocr, minilm (memegap.data.meme_text), for model.fusion=true;
        lda_topics: K; afinn_lexicon: another AFINN file (None: the afinn package's AFINN-111).
    After setup, `text_table` holds every kept meme's id, split, text, OCR text and raw feature
    columns, and `text_report` the LDA coherence and top words.
    """

    def __init__(
        self,
        table: str = "data/memes/memes.parquet",
        image_size: int = 128,
        min_likes: int = 0,
        split: str = "random",
        split_fractions: tuple[float, float, float] = (0.7, 0.1, 0.2),
        split_seed: int = 0,
        phash_distance: int = 6,
        bins: str = "quantile",
        n_bins: int = 4,
        target: str = "log1p",
        sampling: str = "triplet",
        text_features: Sequence[str] = (),
        lda_topics: int = 10,
        afinn_lexicon: str | None = None,
        bad_rows: str = "error",
        batch_size: int = 32,
        eval_batch_size: int = 128,
        num_workers: int = 0,
        store_workers: int | None = None,
        max_per_split: int | None = None,
        seed: int = 0,
        store_dir: str = "data/store",
    ) -> None:
        super().__init__()
        for name, value, allowed in (("split", split, SPLIT_KINDS), ("bins", bins, BIN_KINDS), ("target", target, TARGETS),
                                     ("sampling", sampling, SAMPLING), ("bad_rows", bad_rows, ("error", "skip"))):
            if value not in allowed:
                raise UserError(f"data.{name} must be one of {list(allowed)}, got {value!r}")
        if abs(sum(split_fractions) - 1.0) > 1e-6:
            raise UserError(f"data.split_fractions must sum to 1, got {list(split_fractions)}")
        check_text_features(text_features)  # at start-up, not after the images are packed
        self.save_hyperparameters()
        self.datasets: dict[str, MemeItems] = {}
        self.bin_edges = np.array([])
        self.counts: Counter = Counter()
        self.text_table: pd.DataFrame | None = None
        self.text_report: dict = {}

    @property
    def batch_keys(self) -> tuple[str, ...]:
        """The keys of this module's training batches (memegap.batch.SCHEMA); evaluation batches are plain items."""
        items = ("image", "text", "likes", "target", "bin", "image_id", "id") + (("text_features",) if self.hparams.text_features else ())
        extra = {"items": (), "triplet": ("positive_image", "positive_id", "negative_image", "negative_id"),
                 "pairs": ("other_image", "other_target", "other_id") + (("other_text_features",) if self.hparams.text_features else ())}
        return items + extra[self.hparams.sampling]

    @property
    def num_bins(self) -> int:
        return len(self.bin_edges) + 1

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        table = Path(self.hparams.table)
        read = read_memes_table(table, self.hparams.bad_rows)
        self.counts = Counter(rows=len(read.memes) + read.bad_rows, bad_rows=read.bad_rows)
        memes = [m for m in read.memes if m.likes >= self.hparams.min_likes]
        self.counts["below_min_likes"] = len(read.memes) - len(memes)
        downloaded = [m for m in memes if m.image is not None and m.download_status in (None, "ok")]
        self.counts["no_image"] = len(memes) - len(downloaded)
        store = ImageStore(self.hparams.store_dir, table_store_name("memes", table), self.hparams.image_size)
        store.ensure([(m.id, m.image) for m in downloaded], self.hparams.store_workers)
        readable = {row["key"] for row in store.rows() if row["status"] == "ok"}
        memes = [m for m in downloaded if m.id in readable]
        self.counts["unreadable"] = len(downloaded) - len(memes)
        if len(memes) < 10:
            raise UserError(f"{table}: only {len(memes)} memes with a readable image are left ({dict(self.counts)}); need at least 10")
        images = store.view([m.id for m in memes])
        groups = None
        if self.hparams.split == "group":
            templates = [m.template_url for m in memes]
            hashed = perceptual_groups(images, self.hparams.phash_distance) if not all(templates) else templates
            groups = [template or phash for template, phash in zip(templates, hashed)]
        split_of = split_memes(memes, self.hparams.split, tuple(self.hparams.split_fractions), self.hparams.split_seed, groups)
        rows = {split: evenly_spaced([k for k, name in enumerate(split_of) if name == split], self.hparams.max_per_split) for split in SPLITS}
        likes = np.array([m.likes for m in memes], dtype=np.float64)
        self.bin_edges = like_bin_edges(self.hparams.bins, likes[rows["train"]], self.hparams.n_bins)
        bins = like_bins(likes, self.bin_edges)
        features = self._text_features(memes, rows, table) if self.hparams.text_features else None
        for split, chosen in rows.items():
            index = torch.tensor(chosen, dtype=torch.int64)
            self.datasets[split] = MemeItems([memes[k].id for k in chosen], images.subset(chosen), likes[chosen], self.hparams.target, bins[chosen],
                                             [memes[k].text for k in chosen], features[index] if features is not None else None)
        left_out = {reason: count for reason, count in self.counts.items() if reason != "rows" and count}
        log.info("memes: %d rows in %s; left out: %s; %s", self.counts["rows"], table,
                 ", ".join(f"{count} {reason.replace('_', ' ')}" for reason, count in left_out.items()) or "none",
                 ", ".join(f"{split} {len(self.datasets[split])}" for split in SPLITS))

    def _text_features(self, memes: list[Meme], rows: dict[str, list[int]], table: Path) -> Tensor:
        """float N×F for every meme (0 rows for memes in no split): the text feature columns,
        standardised with the training rows' mean and standard deviation; fills text_table."""
        from memegap.data.meme_text import OcrCache, text_feature_columns

        kept = sorted(k for chosen in rows.values() for k in chosen)
        position = {k: row for row, k in enumerate(kept)}
        texts = [memes[k].text for k in kept]
        ocr = OcrCache(Path(self.hparams.store_dir) / "ocr" / f"{table_store_name('memes', table)}.jsonl").read([memes[k].image for k in kept]) \
            if "ocr" in self.hparams.text_features else None
        train_rows = np.array([position[k] for k in rows["train"]])
        columns, self.text_report = text_feature_columns(texts, ocr, train_rows, self.hparams.text_features,
                                                         self.hparams.afinn_lexicon, self.hparams.lda_topics, self.hparams.seed)
        if not columns:
            raise UserError("data.text_features=[ocr] reads the text but makes no column: add afinn, lda or minilm")
        split_of = {k: split for split, chosen in rows.items() for k in chosen}
        self.text_table = pd.DataFrame({"id": [memes[k].id for k in kept], "split": [split_of[k] for k in kept], "text": texts,
                                        **({"ocr_text": ocr} if ocr is not None else {}), **columns})
        if "lda_coherence" in self.text_report:
            log.info("LDA, %d topics: coherence (c_v) %.3f; top words: %s", self.hparams.lda_topics, self.text_report["lda_coherence"],
                     "; ".join(" ".join(words[:5]) for words in self.text_report["lda_top_words"]))
        matrix = np.stack(list(columns.values()), axis=1)
        train = matrix[train_rows]
        standardised = (matrix - train.mean(0)) / np.where(train.std(0) > 0, train.std(0), 1.0)
        features = torch.zeros(len(memes), matrix.shape[1])
        features[torch.tensor(kept)] = torch.as_tensor(standardised, dtype=torch.float32)
        return features

    def plain_loader(self, split: str) -> DataLoader:
        """The split's memes in table order, as plain items (for embedding a whole split)."""
        return make_loader(self.datasets[split], self.hparams.eval_batch_size, self.hparams.num_workers, False, self.hparams.seed)

    def _loader(self, split: str) -> DataLoader:
        """Training: triplet, pair or shuffled plain batches (data.sampling); val and test: plain_loader."""
        if split != "train":
            return self.plain_loader(split)
        dataset = self.datasets["train"]
        if self.hparams.sampling == "items":
            return make_loader(dataset, self.hparams.batch_size, self.hparams.num_workers, True, self.hparams.seed)
        sampler = TripletSampler(dataset.bins, self.hparams.seed) if self.hparams.sampling == "triplet" else PairSampler(len(dataset), self.hparams.seed)
        return make_loader(dataset, self.hparams.batch_size, self.hparams.num_workers, False, self.hparams.seed, sampler=sampler)
