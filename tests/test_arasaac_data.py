"""ARASAAC pairs: both layouts, the split by concept, duplicates, flags and unreadable images."""

from __future__ import annotations

import json

import pytest

from memegap.data.arasaac import ArasaacDataModule, concept_groups, image_digest, read_pictograms
from memegap.errors import UserError
from memegap.testing.arasaac_api import arasaac_record
from memegap.testing.faulty_images import good_png


def test_the_jocomunico_pictograms_split_by_concept(shared_data, tmp_path):
    root = shared_data / "pictograms_jocomunico"
    assert len(read_pictograms(root)) == 1093
    module = ArasaacDataModule(str(root), image_size=16, store_dir=str(tmp_path / "store"))
    module.setup()
    counts = module.counts
    # 10 rows repeat another row's image and word; the rest form concept groups by image, English or Spanish word
    assert counts["duplicates_removed"] == 10 and counts["pairs"] == 1083 and counts["unreadable_images"] == 0
    assert counts["train_pairs"] + counts["val_pairs"] + counts["test_pairs"] == 1083
    assert 0.75 < counts["train_pairs"] / 1083 < 0.85 and counts["test_pairs"] >= 90  # a pool of 90 fits
    train, test = module.datasets["train"], module.datasets["test"]
    assert not set(train.groups) & set(test.groups)  # no concept in both
    train_words = {text.removeprefix("A picture of ") for text in train.texts}
    assert not train_words & {text.removeprefix("A picture of ") for text in test.texts}
    spanish = ArasaacDataModule(str(root), language="es", image_size=16, store_dir=str(tmp_path / "store"))
    spanish.setup()
    assert spanish.datasets["test"].texts[0].startswith("Una imagen de ")
    assert set(spanish.datasets["test"].groups) == set(test.groups)  # the same split in both languages


def api_folder(tmp_path):
    """An API-layout folder: en.json / es.json records and png/<_id>.png, as `memegap-collect arasaac` writes."""
    tmp_path.mkdir(parents=True)
    records = {
        "en": [arasaac_record(1, "dog", [], []), arasaac_record(2, "puppy", [], []), arasaac_record(3, "cat", [], []),
               arasaac_record(4, "fight", [], []), arasaac_record(5, "kiss", [], []), arasaac_record(6, "ghost", [], [])],
        "es": [arasaac_record(1, "perro", [], []), arasaac_record(2, "perrito", [], []), arasaac_record(3, "gato", [], []),
               arasaac_record(4, "pelea", [], []), arasaac_record(5, "beso", [], [])],
    }
    for language in records:
        for record in records[language]:
            record["synsets"] = {1: ["02084071-n"], 2: ["02084071-n"]}.get(record["_id"], [])  # dog and puppy: one synset
            record["violence"] = record["_id"] == 4
            record["sex"] = record["_id"] == 5
        (tmp_path / f"{language}.json").write_text(json.dumps(records[language]))
    (tmp_path / "png").mkdir()
    for pictogram_id in (1, 2, 3, 4, 6):  # 5 has no PNG
        (tmp_path / "png" / f"{pictogram_id}.png").write_bytes(good_png(pictogram_id, size=30))
    return tmp_path


def test_the_api_layout_its_synsets_flags_and_a_missing_png(tmp_path):
    root = api_folder(tmp_path / "arasaac")
    pictograms = read_pictograms(root)
    assert [p.key for p in pictograms] == ["1", "2", "3", "4", "5", "6"]
    assert pictograms[0].keywords == {"en": ("dog",), "es": ("perro",)} and "synset:02084071-n" in pictograms[0].concepts
    groups = concept_groups(pictograms, [image_digest(p.path) for p in pictograms])
    assert groups[0] == groups[1] and len(set(groups)) == 5  # dog and puppy share a synset

    module = ArasaacDataModule(str(root), language="es", image_size=8, exclude_violence=True, split_fractions=(1.0, 0.0, 0.0),
                               store_dir=str(tmp_path / "store"))
    module.setup()
    assert module.counts["flagged_left_out"] == 1 and module.counts["without_keyword"] == 1  # the fight; the ghost (no es)
    assert module.counts["unreadable_images"] == 1  # the kiss has no PNG: counted, left out
    assert sorted(module.datasets["train"].ids) == ["1", "2", "3"]
    assert sorted(module.datasets["train"].texts) == ["Una imagen de gato", "Una imagen de perrito", "Una imagen de perro"]


def test_a_folder_without_pictograms_is_named(tmp_path):
    with pytest.raises(UserError, match=f"data.root={tmp_path}: neither labels.csv nor"):
        ArasaacDataModule(str(tmp_path)).setup()
