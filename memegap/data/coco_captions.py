"""MS-COCO images paired with their captions (the modality-gap thesis's natural-image data).

`data.root` holds a COCO captions JSON (`data.captions_file`, default captions.json) in the standard
layout — {"images": [{"id", "file_name", ...}], "annotations": [{"image_id", "caption", ...}]} — and
the images at `<root>/<data.image_dir>/<file_name>`. ../shared/data/coco_mini is such a folder.

Split: each image's `split` field when the file has one (Karpathy's files: train / restval → train,
val, test); if the file names no test image, its val images are halved into val and test by a fixed
hash of the image id (ours). A file without split fields (captions_train2017.json) is split by that
hash in data.split_fractions (ours).

Training samples one of an image's captions per epoch (memegap.data.sampling.OnePerGroupSampler).
Evaluation keeps every caption, ordered by image, and each pair carries its image's row as "image_id"
(the retrieval and geometry callbacks count an image once: a hit when any caption is retrieved).
`data.prompt` is put before every caption (the thesis stored its captions with a prefix; ours: none).

Bad input is counted, never fatal: annotations naming an unknown image or holding an empty caption,
images without a caption, and unreadable or missing image files (`CocoCaptionsDataModule.counts`).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from torch.utils.data import Sampler

from memegap.data.image_store import ImageStore
from memegap.data.pairs import ImageTextPairs, PairedDataModule
from memegap.data.sampling import OnePerGroupSampler
from memegap.data.splits import SPLITS, evenly_spaced, hash_position, split_at
from memegap.errors import UserError

log = logging.getLogger(__name__)
SPLIT_OF_FIELD = {"train": "train", "restval": "train", "val": "val", "test": "test"}


@dataclass(frozen=True)
class CocoImage:
    """One COCO image with its captions (in annotation order) and its split."""

    image_id: int
    path: Path
    captions: tuple[str, ...]
    split: str


def read_coco_captions(captions_path: Path, image_dir: Path, fractions: tuple[float, float, float]) -> tuple[list[CocoImage], Counter]:
    """The images of a COCO captions file that have at least one caption, and counts of what was left out."""
    try:
        document = json.loads(captions_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"data.captions_file: {captions_path} does not exist") from None
    except json.JSONDecodeError as error:
        raise UserError(f"data.captions_file: {captions_path} is not JSON ({error})") from None
    if not isinstance(document, dict) or not isinstance(document.get("images"), list) or not isinstance(document.get("annotations"), list):
        raise UserError(f"{captions_path}: not a COCO captions file (it needs 'images' and 'annotations' lists)")
    counts = Counter()
    files = {}
    fields = {}
    for record in document["images"]:
        if not isinstance(record, dict) or not isinstance(record.get("id"), int) or not isinstance(record.get("file_name"), str):
            counts["bad_image_records"] += 1
            continue
        files[record["id"]] = image_dir / record["file_name"]
        fields[record["id"]] = record.get("split")
    captions: dict[int, list[str]] = {image_id: [] for image_id in files}
    for record in document["annotations"]:
        caption = record.get("caption") if isinstance(record, dict) else None
        if not isinstance(caption, str) or not caption.strip():
            counts["empty_captions"] += 1
        elif record.get("image_id") not in captions:
            counts["captions_of_unknown_images"] += 1
        else:
            captions[record["image_id"]].append(" ".join(caption.split()))
    has_test = any(SPLIT_OF_FIELD.get(field) == "test" for field in fields.values())
    images = []
    for image_id, path in files.items():
        if not captions[image_id]:
            counts["images_without_captions"] += 1
            continue
        images.append(CocoImage(image_id, path, tuple(captions[image_id]), image_split(image_id, fields[image_id], has_test, fractions)))
    if not images:
        raise UserError(f"{captions_path}: no image with a caption")
    return images, counts


def image_split(image_id: int, field: str | None, file_has_test: bool, fractions: tuple[float, float, float]) -> str:
    """The split of one image: its `split` field (val halved into val and test when the file has no
    test image), else a fixed hash of its id cut at `fractions`."""
    position = hash_position(f"coco:{image_id}")
    if field is None:
        return split_at(position, fractions)
    if field not in SPLIT_OF_FIELD:
        raise UserError(f"COCO image {image_id}: split {field!r} is none of {sorted(SPLIT_OF_FIELD)}")
    split = SPLIT_OF_FIELD[field]
    if split == "val" and not file_has_test:
        return "val" if position < 0.5 else "test"
    return split


class CocoCaptionsDataModule(PairedDataModule):
    """COCO image–caption pairs: one random caption per image per training epoch, all captions at evaluation."""

    def __init__(
        self,
        root: str,
        captions_file: str = "captions.json",
        image_dir: str = "",
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
        if language != "en":
            raise UserError(f"data.language={language!r}: COCO captions are English (data.language=en)")
        self.save_hyperparameters()
        self.counts: Counter = Counter()

    def _train_sampler(self, dataset: ImageTextPairs) -> Sampler:
        return OnePerGroupSampler(dataset.image_rows, self.hparams.seed)

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        hp = self.hparams
        root = Path(hp.root)
        images, self.counts = read_coco_captions(root / hp.captions_file, root / hp.image_dir, tuple(hp.split_fractions))
        source = "coco-" + hashlib.sha1(str((root / hp.captions_file).resolve()).encode()).hexdigest()[:8]
        store = ImageStore(hp.store_dir, source, hp.image_size).ensure([(str(image.image_id), image.path) for image in images], hp.store_workers)
        readable = {row["key"] for row in store.rows() if row["status"] == "ok"}
        self.counts["unreadable_images"] = len(images) - len(readable)
        for split in SPLITS:
            members = evenly_spaced([image for image in images if image.split == split and str(image.image_id) in readable], hp.max_per_split)
            ids, texts, image_rows = [], [], []
            for row, image in enumerate(members):
                for number, caption in enumerate(image.captions):
                    ids.append(f"{image.image_id}:{number}")
                    texts.append(hp.prompt + caption)
                    image_rows.append(row)
            keys = [str(image.image_id) for image in members]
            self.datasets[split] = ImageTextPairs(ids, texts, store.view(keys), [keys[row] for row in image_rows], image_rows)
            self.counts[f"{split}_images"], self.counts[f"{split}_captions"] = len(members), len(texts)
        log.info("COCO captions from %s: %s", root / hp.captions_file, dict(self.counts))
