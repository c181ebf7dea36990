"""The Twemoji reader and data module: names, the split by base emoji, images and batches."""

from __future__ import annotations

from collections import Counter, defaultdict

import pytest
import torch

from memegap.data.pairs import PROMPTS
from memegap.data.sampling import EpochSeededSampler
from memegap.data.splits import evenly_spaced
from memegap.data.twemoji import (
    EMOJI_GROUPS, TwemojiDataModule, base_emoji, emoji_group, emoji_group_table, list_pictograms, split_pictograms,
)
from memegap.errors import UserError


@pytest.fixture(scope="module")
def pictograms():
    return list_pictograms()


def test_every_pictogram_has_both_names_and_an_exact_png(pictograms):
    assert 3900 <= len(pictograms) <= 4009  # 4,009 PNGs; flags' letters and a few others have no name
    for p in pictograms:
        assert p.names["en"] and p.names["es"]
        # the file's exact code points (Twemoji keeps FE0F inside ZWJ sequences), or them and a final FE0F
        in_file = "".join(chr(int(code, 16)) for code in p.path.stem.split("-"))
        assert p.emoji in (in_file, in_file + "\ufe0f"), (p.emoji, p.path.name)
    thumbs = next(p for p in pictograms if p.emoji == "👍🏽")
    assert thumbs.names == {"en": "thumbs up medium skin tone", "es": "pulgar hacia arriba tono de piel medio"}


@pytest.mark.parametrize(
    "variants",
    [["👍", "👍🏻", "👍🏿"], ["🧑‍⚕️", "👩‍⚕️", "👨🏿‍⚕️"], ["🏃", "🏃‍♀️", "🏃🏽‍♂️"]],
)
def test_variants_share_a_base(variants):
    assert len({base_emoji(v) for v in variants}) == 1


def test_distinct_emoji_have_distinct_bases():
    assert len({base_emoji(e) for e in ["👍", "👎", "🧑‍⚕️", "🧑‍🎨", "🏃", "🐶"]}) == 6


def test_split_is_by_base_and_close_to_the_fractions(pictograms):
    by_split = split_pictograms(pictograms)
    assert sorted(p.path for split in by_split.values() for p in split) == sorted(p.path for p in pictograms)
    split_of_path = {p.path: split for split, items in by_split.items() for p in items}
    splits_of_base = defaultdict(set)
    for p in pictograms:
        splits_of_base[p.base].add(split_of_path[p.path])
    assert all(len(splits) == 1 for splits in splits_of_base.values())
    assert 0.75 < len(by_split["train"]) / len(pictograms) < 0.85
    assert min(len(by_split["val"]), len(by_split["test"])) > 300
    assert split_pictograms(pictograms) == by_split  # fixed: no seed, no state


def test_split_divides_every_common_family_size_in_the_fractions(pictograms):
    """1-, 6- and 18-variant families (single emoji, skin tones, man/woman/person × tones) are each
    split 80/10/10 to within 2 bases, so val and test hold the same mix of easy and hard families."""
    family_size = Counter(p.base for p in pictograms)
    by_split = split_pictograms(pictograms)
    for size in (1, 6, 18):
        bases_of_size = [base for base, count in family_size.items() if count == size]
        assert len(bases_of_size) >= 70
        for split, fraction in zip(("train", "val", "test"), (0.8, 0.1, 0.1)):
            count = len({p.base for p in by_split[split] if family_size[p.base] == size})
            assert abs(count - fraction * len(bases_of_size)) <= 2, (size, split, count)


@pytest.mark.parametrize("language", ["en", "es"])
def test_datamodule_batches(language):
    datamodule = TwemojiDataModule(language=language, image_size=24, batch_size=5, max_per_split=10)
    datamodule.setup()
    batch = next(iter(datamodule.train_dataloader()))
    assert batch["image"].shape == (5, 3, 24, 24) and batch["image"].dtype == torch.uint8  # the model converts it on its device
    assert int(batch["image"].max()) > 1  # 0–255, not [0, 1]
    assert all(text.startswith(PROMPTS[language].split("{")[0]) for text in batch["text"])
    assert len(datamodule.datasets["test"]) == 10


def test_mini_splits_are_spread_over_the_whole_split():
    assert evenly_spaced(list(range(10)), 4) == [0, 2, 5, 7]
    assert evenly_spaced(list(range(3)), 4) == [0, 1, 2] and evenly_spaced(list(range(3)), None) == [0, 1, 2]


def test_shuffle_depends_only_on_seed_and_epoch():
    datamodule = TwemojiDataModule(image_size=8, batch_size=4, max_per_split=12, seed=3)
    datamodule.setup()
    loader = datamodule.train_dataloader()

    def first_ids(epoch):
        loader.sampler.set_epoch(epoch)
        return next(iter(loader))["id"]

    assert first_ids(0) == first_ids(0)
    assert first_ids(0) != first_ids(1)


def test_bad_arguments_name_the_key():
    with pytest.raises(UserError, match="data.language"):
        TwemojiDataModule(language="fr")
    with pytest.raises(UserError, match="data.split_fractions"):
        TwemojiDataModule(split_fractions=(0.5, 0.1, 0.1))


def test_grouped_sampler_keeps_each_group_together_in_a_seeded_order():
    groups = [f"base{index % 7}" for index in range(40)]  # 7 groups of 5 or 6 interleaved items
    sampler = EpochSeededSampler(groups, seed=1, groups=groups)
    order = list(sampler)
    assert sorted(order) == list(range(40))
    runs = [groups[i] for position, i in enumerate(order) if position == 0 or groups[order[position - 1]] != groups[i]]
    assert len(runs) == 7  # each group appears as one contiguous run
    sampler.set_epoch(1)
    assert list(sampler) != order
    sampler.set_epoch(0)
    assert list(sampler) == order


def test_training_batches_hold_whole_variant_groups():
    datamodule = TwemojiDataModule(image_size=8, batch_size=18, seed=0)
    datamodule.setup()
    bases = datamodule.datasets["train"].groups
    order = list(datamodule.train_dataloader().sampler)
    changes = sum(bases[a] != bases[b] for a, b in zip(order, order[1:]))
    assert changes == len(set(bases)) - 1
    with pytest.raises(ValueError, match="groups"):
        EpochSeededSampler(range(3), groups=["a", "b"])


def test_split_by_file_puts_siblings_of_test_pictograms_in_train():
    by_base = TwemojiDataModule(image_size=8)
    by_file = TwemojiDataModule(image_size=8, split_by="file")
    by_base.setup(), by_file.setup()
    train_bases = {split: set(module.datasets["train"].groups) for split, module in (("base", by_base), ("file", by_file))}
    test_bases = {split: module.datasets["test"].groups for split, module in (("base", by_base), ("file", by_file))}
    assert not any(base in train_bases["base"] for base in test_bases["base"])
    leaked = sum(base in train_bases["file"] for base in test_bases["file"]) / len(test_bases["file"])
    assert leaked > 0.4  # the variants of a test pictogram are mostly in train
    with pytest.raises(UserError, match="data.split_by"):
        TwemojiDataModule(split_by="emoji")


def test_unicode_groups_are_the_zero_shot_classes():
    table = emoji_group_table()
    assert emoji_group("1f44d-1f3fd", table) == "People & Body"  # thumbs up, medium skin tone (a variant)
    assert emoji_group("23-20e3", table) == "Symbols"  # keycap #: Twemoji drops the zero padding and FE0F
    assert emoji_group("1f1e8-1f1f6", table) == "Flags"  # a flag newer than the table: regional indicators
    assert emoji_group("1f3fd", table) is None  # a bare skin tone: Unicode's "Component", not a class
    module = TwemojiDataModule(language="es", image_size=24, max_per_split=30)
    module.setup()
    words, class_of_id = module.zero_shot_classes()
    assert len(words) == len(EMOJI_GROUPS) == 9 and "comida y bebida" in words and module.prompt(words[3]) == "Una imagen de comida y bebida"
    ids = [pair_id for dataset in module.datasets.values() for pair_id in dataset.ids]
    assert set(class_of_id) <= set(ids) and len(class_of_id) >= 0.9 * len(ids)
