"""Instagram-style posts (the influencer thesis, 001): an image and its caption, labelled with one or
several categories, grouped by the user who posted them.

Table (CSV or parquet): `post_id, username, image_path, caption` and either `labels` (categories,
separated by "|") or `tags` (source tags, "|"-separated, most telling first: hashtags, or the object
names of an image collection) that `tag_map` turns into categories. An optional `user_categories`
column holds the true categories of the post's user ("|"-separated, the same on each of a user's
posts), for the per-influencer decision. `memegap-posts build-coco` writes such a table from COCO.

Classes: `categories` (the thesis's five: outdoor, animals, food, sport, fashion) and, with
`other=true`, "other" for a post whose labels are all outside them (with other=false such a post is
left out and counted). A post's first label is its class for the single-label classifiers; all of its
labels are kept (`posts[split][i].labels`).

Split: by user (a user's posts never straddle splits), 50/25/25 by default (ours; the thesis kept its
influencers apart from its training posts), so that the influencer threshold is chosen on validation
users and measured on test users.

Batch: {"image": float N×3×S×S in [0, 1], "label": int64 N, "id": list[str] (post_id), "weight": N
(training only, when balanced by weights)}; captions, users and labels of each split are in
`self.posts[split]`, in the order of the dataset.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch
from torchvision.transforms import v2

from memegap.utils.tables import read_user_columns, resolve_path
from memegap.data.image_store import ImageStore, table_store_name
from memegap.data.labelled import LabelledImageDataModule, LabelledImages
from memegap.data.splits import SPLITS, evenly_spaced, split_groups
from memegap.errors import UserError

log = logging.getLogger(__name__)

CATEGORIES = ("outdoor", "animals", "food", "sport", "fashion")  # the thesis's five
OTHER = "other"
REQUIRED_COLUMNS = ("post_id", "username", "image_path", "caption")
UNKNOWN_TAGS = ("error", "skip", "other")
SEPARATOR = "|"
DROPPED_CHARACTERS = re.compile(r"[!?()#@]")


def clean_caption(text: str | None) -> str:
    """A caption as the thesis cleaned it: lowercase; line breaks become spaces; `!`, `?`, `(`, `)`
    dropped; `#` and `@` dropped with the word kept (#Food → food; measured slightly better there);
    emoji and every other character kept; runs of spaces collapsed."""
    text = DROPPED_CHARACTERS.sub("", (text or "").lower())
    return " ".join(text.split())


def split_cell(cell: str | None) -> list[str]:
    """The "|"-separated entries of a cell, stripped, empty ones left out."""
    return [entry.strip() for entry in str(cell or "").split(SEPARATOR) if entry.strip()]


@dataclass(frozen=True)
class Post:
    post_id: str
    username: str
    image: Path | None  # None when the row names no file
    caption: str  # as in the table (clean_caption gives the text models' input)
    labels: tuple[str, ...]  # class names, the first one the post's class
    user_categories: tuple[str, ...] | None  # the user's true categories, when the table has them


@dataclass(frozen=True)
class PostsTable:
    posts: list[Post]
    counts: Counter  # rows, unknown_tags (tags skipped), unlabelled (posts left out: no category)
    class_names: list[str]


def read_posts_table(
    path: str | Path,
    categories: tuple[str, ...] = CATEGORIES,
    other: bool = True,
    tag_map: dict[str, str | None] | None = None,
    unknown_tags: str = "error",
) -> PostsTable:
    """The posts of a table, labelled with `categories` (+ "other").

    tag_map: source tag → category (or "other", dropped with other=false), or None for a tag that says
    nothing (it is ignored); needed when the
    table has `tags` rather than `labels`. unknown_tags: what a tag absent from tag_map does: "error"
    (a UserError naming the row and the tag), "skip" (ignored and counted) or "other" (counts as other).
    A label outside `categories` is "other" (other=true) or dropped; a post left with no label is left
    out and counted as unlabelled.
    """
    path = Path(path)
    if unknown_tags not in UNKNOWN_TAGS:
        raise UserError(f"data.unknown_tags must be one of {list(UNKNOWN_TAGS)}, got {unknown_tags!r}")
    class_names = [*categories, OTHER] if other else list(categories)
    columns = read_user_columns(path, REQUIRED_COLUMNS, hint=" (a posts table: post_id, username, image_path, caption, labels or tags)",
                                optional=("labels", "tags", "user_categories"))
    source = "labels" if "labels" in columns else "tags" if "tags" in columns else None
    if source is None:
        raise UserError(f"{path}: needs a labels column (categories) or a tags column (with data.tag_map)")
    if source == "tags" and not tag_map:
        raise UserError(f"{path}: has tags but no labels; give data.tag_map (tag → category) to turn tags into categories")
    if tag_map:
        wrong = sorted({value for value in tag_map.values() if value is not None and value not in (*categories, OTHER)})
        if wrong:
            raise UserError(f"data.tag_map maps to {wrong}, which are not data.categories {list(categories)} or {OTHER!r}")
    counts, posts = Counter(rows=len(columns["post_id"])), []
    for index in range(len(columns["post_id"])):
        cell = {name: values[index] for name, values in columns.items()}
        named = split_cell(cell[source])
        if source == "tags":
            named = map_tags(named, tag_map, unknown_tags, counts, f"{path}: data row {index + 1} (post_id {cell['post_id']})")
        labels = class_labels(named, categories, other)
        if not labels:
            counts["unlabelled"] += 1
            continue
        user_categories = tuple(split_cell(cell["user_categories"])) if "user_categories" in cell else None
        image = resolve_path(path, cell["image_path"]) if cell["image_path"] else None
        posts.append(Post(str(cell["post_id"]), str(cell["username"] or ""), image, cell["caption"] or "", tuple(labels), user_categories))
    return PostsTable(posts, counts, class_names)


def class_labels(named: list[str], categories: tuple[str, ...], other: bool) -> list[str]:
    """A post's classes from its named categories, in order, without repeats: a name outside
    `categories` is "other" (other=true, placed last: a post of food and of a table is food) or dropped."""
    labels = list(dict.fromkeys(name for name in named if name in categories))
    return labels + [OTHER] if other and any(name not in categories for name in named) else labels


def map_tags(tags: list[str], tag_map: dict[str, str | None], unknown_tags: str, counts: Counter, where: str) -> list[str]:
    """The categories of a post's tags, in the tags' order (ignored tags left out)."""
    mapped = []
    for tag in tags:
        key = tag.lower().lstrip("#")
        if key in tag_map:
            if tag_map[key] is not None:
                mapped.append(tag_map[key])
        elif unknown_tags == "error":
            raise UserError(f"{where}: tag {tag!r} is not in data.tag_map; add it, or set data.unknown_tags=skip|other")
        else:
            counts["unknown_tags"] += 1
            if unknown_tags == OTHER:
                mapped.append(OTHER)
    return mapped


class PostsDataModule(LabelledImageDataModule):
    """Posts for the image classifier (the part-1 module), with captions and users kept beside."""

    def __init__(
        self,
        table: str = "data/posts/coco_posts.csv",
        categories: tuple[str, ...] = CATEGORIES,
        other: bool = True,
        tag_map: dict[str, str | None] | None = None,
        unknown_tags: str = "error",
        image_size: int = 224,
        split_fractions: tuple[float, float, float] = (0.5, 0.25, 0.25),
        balance: str = "weights",
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
        self.save_hyperparameters()
        self.posts: dict[str, list[Post]] = {}
        self.counts: Counter = Counter()

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        table = Path(self.hparams.table)
        if not table.is_file():
            raise UserError(f"{table}: no such posts table; write the COCO-built one with: memegap-posts build-coco --out {table}")
        read = read_posts_table(table, tuple(self.hparams.categories), self.hparams.other, self.hparams.tag_map, self.hparams.unknown_tags)
        self.class_names, self.counts = read.class_names, Counter(read.counts)
        with_image = [post for post in read.posts if post.image is not None and post.image.is_file()]
        self.counts["missing_image"] = len(read.posts) - len(with_image)
        store = ImageStore(self.hparams.store_dir, table_store_name("posts", table), self.hparams.image_size)
        store.ensure([(post.post_id, post.image) for post in with_image], self.hparams.store_workers)
        readable = {record["key"] for record in store.rows() if record["status"] == "ok"}
        self.counts["unreadable"] = len(with_image) - len(readable)
        kept = [post for post in with_image if post.post_id in readable]
        split_of_post = split_groups([post.username for post in kept], tuple(self.hparams.split_fractions))
        self.train_augment = [v2.RandomHorizontalFlip()] if self.hparams.augment else []  # ours; the thesis names none
        for split in SPLITS:
            posts = evenly_spaced([post for post, name in zip(kept, split_of_post) if name == split], self.hparams.max_per_split)
            labels = torch.tensor([self.class_names.index(post.labels[0]) for post in posts], dtype=torch.int64)
            weights = self.training_weights(labels) if split == "train" else None
            ids = [post.post_id for post in posts]
            self.posts[split] = posts
            self.datasets[split] = LabelledImages(ids, store.view(ids), labels, weights)
        left_out = {reason: self.counts[reason] for reason in ("unlabelled", "missing_image", "unreadable") if self.counts[reason]}
        log.info(
            "posts: %d rows in %s; left out: %s%s; %s",
            self.counts["rows"], table, ", ".join(f"{count} {reason.replace('_', ' ')}" for reason, count in left_out.items()) or "none",
            f"; {self.counts['unknown_tags']} unknown tags skipped" if self.counts["unknown_tags"] else "",
            ", ".join(f"{split} {len(self.datasets[split])} posts of {len({post.username for post in self.posts[split]})} users" for split in SPLITS),
        )
