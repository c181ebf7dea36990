"""ARASAAC pictograms paired with their keywords in English or Spanish (the modality-gap thesis's data).

`data.root` holds either layout:
- what `memegap-collect arasaac` writes: `<root>/<locale>.json` (the API's records: `_id`,
  `keywords[].keyword`, `synsets`, `sex`, `violence`, ...) and `<root>/png/<_id>.png`;
- the `labels.csv` layout of ../shared/data/pictograms_jocomunico: pictoid, type, file, ca, es, en.

Prompt: "A picture of {keywords}" / "Una imagen de {keywords}", all keywords of a pictogram joined by
", " (as the thesis did; CLIP's 77-token limit applies to CLIP towers). Images are composited on white
and resized once into the packed image store.

Split (ours; the thesis gives none): fixed, by concept. Pictograms that share image bytes, a keyword
(in either language) or a synset form one group, and a group lands in one split, stratified by group
size (memegap.data.splits), so a test pictogram never has a same-word or same-image twin in train.
Exact duplicates (same image bytes and same prompt) are kept once; `ArasaacDataModule.counts` counts
them, the groups, the flagged pictograms left out and the unreadable images.

ARASAAC pictograms are CC BY-NC-SA (Gobierno de Aragón, author Sergio Palao).
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from memegap.data.image_store import ImageStore
from memegap.data.pairs import PROMPTS, ImageTextPairs, PairedDataModule
from memegap.data.splits import SPLITS, evenly_spaced, split_groups
from memegap.errors import UserError

log = logging.getLogger(__name__)
LANGUAGES = ("en", "es")


@dataclass(frozen=True)
class ArasaacPictogram:
    """One word–pictogram pair: its keywords by language and the keys that tie it to its concept."""

    key: str  # unique: the API's _id, or the labels.csv row's pictoid
    path: Path
    keywords: dict[str, tuple[str, ...]]  # language -> keywords, e.g. {"en": ("dog",), "es": ("perro",)}
    concepts: tuple[str, ...]  # "en:dog", "es:perro", "synset:02084071-n": shared keys join a group
    sex: bool = False
    violence: bool = False

    def prompt(self, language: str) -> str:
        return PROMPTS[language].format(name=", ".join(self.keywords.get(language, ())))


def read_labels_layout(root: Path) -> list[ArasaacPictogram]:
    """labels.csv (pictoid, type, file, ca, es, en): one pair per row."""
    pictograms = []
    with open(root / "labels.csv", newline="", encoding="utf-8") as handle:
        for number, row in enumerate(csv.DictReader(handle), start=2):
            missing = [column for column in ("pictoid", "file", *LANGUAGES) if column not in row]
            if missing:
                raise UserError(f"{root / 'labels.csv'}: no column {', '.join(missing)}")
            keywords = {language: (row[language].strip(),) for language in LANGUAGES if row[language].strip()}
            concepts = tuple(f"{language}:{words[0].lower()}" for language, words in keywords.items())
            pictograms.append(ArasaacPictogram(f"{row['pictoid']}-{number}", root / row["file"], keywords, concepts))
    return pictograms


def read_api_layout(root: Path) -> list[ArasaacPictogram]:
    """<root>/<locale>.json records joined on _id across the locales present, PNGs in <root>/png/."""
    records: dict[int, dict[str, dict]] = {}
    for language in LANGUAGES:
        path = root / f"{language}.json"
        if path.exists():
            for record in json.loads(path.read_text(encoding="utf-8")):
                if isinstance(record, dict) and isinstance(record.get("_id"), int):
                    records.setdefault(record["_id"], {})[language] = record
    pictograms = []
    for pictogram_id, by_language in sorted(records.items()):
        keywords = {
            language: tuple(k["keyword"].strip() for k in record.get("keywords", []) if isinstance(k, dict) and k.get("keyword", "").strip())
            for language, record in by_language.items()
        }
        keywords = {language: words for language, words in keywords.items() if words}
        any_record = next(iter(by_language.values()))
        concepts = tuple(f"{language}:{word.lower()}" for language, words in keywords.items() for word in words)
        concepts += tuple(f"synset:{synset}" for synset in any_record.get("synsets", []) or [])
        pictograms.append(ArasaacPictogram(str(pictogram_id), root / "png" / f"{pictogram_id}.png", keywords, concepts,
                                           bool(any_record.get("sex")), bool(any_record.get("violence"))))
    return pictograms


def read_pictograms(root: str | Path) -> list[ArasaacPictogram]:
    root = Path(root)
    if (root / "labels.csv").is_file():
        return read_labels_layout(root)
    if any((root / f"{language}.json").is_file() for language in LANGUAGES):
        return read_api_layout(root)
    raise UserError(
        f"data.root={root}: neither labels.csv nor <locale>.json lists (en.json, es.json) are there. "
        "Fetch the pictograms with `memegap-collect arasaac --root <folder>` and pass that folder"
    )


def image_digest(path: Path) -> str | None:
    """sha1 of the file's bytes (None for a missing file: the image store records it as skipped)."""
    return hashlib.sha1(path.read_bytes()).hexdigest() if path.is_file() else None


def concept_groups(pictograms: list[ArasaacPictogram], digests: list[str | None]) -> list[str]:
    """A group key per pictogram: pictograms sharing image bytes or any concept key share a group
    (connected components, by union-find)."""
    parent: dict[str, str] = {}

    def find(key: str) -> str:
        while parent.setdefault(key, key) != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    for pictogram, digest in zip(pictograms, digests):
        keys = [f"row:{pictogram.key}", *pictogram.concepts] + ([f"image:{digest}"] if digest else [])
        for other in keys[1:]:
            parent[find(other)] = find(keys[0])
    return [find(f"row:{pictogram.key}") for pictogram in pictograms]


class ArasaacDataModule(PairedDataModule):
    """ARASAAC pictogram–keyword pairs, split by concept; prompts "A picture of ..." / "Una imagen de ..."."""

    def __init__(
        self,
        root: str,
        language: str = "en",
        image_size: int = 224,
        batch_size: int = 90,
        eval_batch_size: int = 256,
        num_workers: int = 0,
        store_workers: int | None = None,
        split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
        max_per_split: int | None = None,
        exclude_sex: bool = False,
        exclude_violence: bool = False,
        seed: int = 0,
        store_dir: str = "data/store",
    ) -> None:
        super().__init__(language, split_fractions)
        self.save_hyperparameters()
        self.counts: dict[str, int] = {}

    def _pairs(self) -> tuple[list[ArasaacPictogram], list[str], list[str]]:
        """The pairs this config uses, with their concept group and split; fills `report`.

        Groups and splits are computed on every pictogram of the folder, before the filters of this
        config (flags, a keyword in the language, exact duplicates of image and prompt), so that the
        split is the same in English and Spanish."""
        hp = self.hparams
        pictograms = read_pictograms(hp.root)
        digests = [image_digest(p.path) for p in pictograms]
        groups = concept_groups(pictograms, digests)
        splits = split_groups(groups, tuple(hp.split_fractions))
        kept, seen, flagged, without_keyword = [], set(), 0, 0
        for pictogram, digest, group, split in zip(pictograms, digests, groups, splits):
            if (hp.exclude_sex and pictogram.sex) or (hp.exclude_violence and pictogram.violence):
                flagged += 1
                continue
            if not pictogram.keywords.get(hp.language):
                without_keyword += 1
                continue
            if (digest, pictogram.prompt(hp.language)) not in seen:
                seen.add((digest, pictogram.prompt(hp.language)))
                kept.append((pictogram, group, split))
        self.counts = {
            "pictograms": len(pictograms),
            "flagged_left_out": flagged,
            "without_keyword": without_keyword,
            "duplicates_removed": len(pictograms) - flagged - without_keyword - len(kept),
            "pairs": len(kept),
            "groups": len({group for _, group, _ in kept}),
        }
        return [p for p, _, _ in kept], [g for _, g, _ in kept], [s for _, _, s in kept]

    def _store(self, pictograms: list[ArasaacPictogram]) -> ImageStore:
        source = "arasaac-" + hashlib.sha1(str(Path(self.hparams.root).resolve()).encode()).hexdigest()[:8]
        return ImageStore(self.hparams.store_dir, source, self.hparams.image_size).ensure([(p.key, p.path) for p in pictograms], self.hparams.store_workers)

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        hp = self.hparams
        pictograms, groups, split_of = self._pairs()
        store = self._store(pictograms)
        readable = {row["key"] for row in store.rows() if row["status"] == "ok"}
        self.counts["unreadable_images"] = len(pictograms) - len(readable)
        for split in SPLITS:
            members = [(p, g) for p, g, s in zip(pictograms, groups, split_of) if s == split and p.key in readable]
            members = evenly_spaced(members, hp.max_per_split)
            ids = [p.key for p, _ in members]
            self.datasets[split] = ImageTextPairs(ids, [p.prompt(hp.language) for p, _ in members], store.view(ids), [g for _, g in members])
            self.counts[f"{split}_pairs"] = len(ids)
        log.info("ARASAAC pairs from %s: %s", hp.root, self.counts)
