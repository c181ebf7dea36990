"""COCO captions: the real mini COCO, bad input counted, one caption per image per training epoch, and
R@k with several captions per image (a hit when any caption is retrieved) on a hand-computed case."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from memegap.data.coco_captions import CocoCaptionsDataModule
from memegap.data.sampling import OnePerGroupSampler
from memegap.errors import UserError
from memegap.metrics.retrieval import recall_at_k
from memegap.testing.faulty_images import good_png
from memegap.train import train
from memegap.utils.trained_run import set_up_data, trained_model


def test_the_mini_coco_pairs_every_caption_at_evaluation_and_one_per_image_in_training(shared_data, tmp_path):
    module = CocoCaptionsDataModule(str(shared_data / "coco_mini"), image_size=16, store_dir=str(tmp_path / "store"), prompt="A picture of ")
    module.setup()
    counts = module.counts
    assert counts["train_images"] == 80 and counts["val_images"] + counts["test_images"] == 79  # the file's val halved into val / test
    assert counts["unreadable_images"] == 0 and min(counts["val_images"], counts["test_images"]) > 25
    assert counts["train_captions"] == 5 * 80
    val = module.datasets["val"]
    assert len(val) == 5 * counts["val_images"] and val.texts[0].startswith("A picture of ")
    assert val.image_rows == sorted(val.image_rows) and val[7]["image_id"] == 1  # captions of one image together
    sampler = module.train_dataloader().sampler
    first, again = list(sampler), list(sampler)
    assert first == again and len(first) == 80  # the same epoch draws the same captions
    assert sorted(module.datasets["train"].image_rows[i] for i in first) == list(range(80))  # each image once
    sampler.set_epoch(1)
    assert sorted(module.datasets["train"].image_rows[i] for i in sampler) == list(range(80)) and list(sampler) != first


def test_bad_records_and_files_are_counted_and_left_out(tmp_path):
    (tmp_path / "img").mkdir()
    for k, name in enumerate(("a", "b", "c")):
        (tmp_path / "img" / f"{name}.png").write_bytes(good_png(k))
    (tmp_path / "img" / "broken.png").write_bytes(b"\x89PNG not really")
    document = {
        "images": [{"id": 1, "file_name": "img/a.png"}, {"id": 2, "file_name": "img/b.png"}, {"id": 3, "file_name": "img/c.png"},
                   {"id": 4, "file_name": "img/broken.png"}, {"id": 5, "file_name": "img/missing.png"}, {"file_name": "no id"}],
        "annotations": [{"image_id": 1, "caption": "a red  square "}, {"image_id": 1, "caption": "red"}, {"image_id": 2, "caption": "b"},
                        {"image_id": 4, "caption": "broken"}, {"image_id": 5, "caption": "gone"}, {"image_id": 9, "caption": "whose?"},
                        {"image_id": 2, "caption": "   "}],
    }
    (tmp_path / "captions.json").write_text(json.dumps(document))
    module = CocoCaptionsDataModule(str(tmp_path), image_size=8, store_dir=str(tmp_path / "store"), split_fractions=(1.0, 0.0, 0.0))
    module.setup()
    counts = module.counts
    assert counts["bad_image_records"] == 1 and counts["empty_captions"] == 1 and counts["captions_of_unknown_images"] == 1
    assert counts["images_without_captions"] == 1 and counts["unreadable_images"] == 2  # image 3; the broken and the missing file
    train = module.datasets["train"]  # no split fields: split by hash, here all in train
    assert sorted(train.texts) == ["a red square", "b", "red"] and len(train.images) == 2


def test_a_file_that_is_not_coco_captions_is_named(tmp_path):
    (tmp_path / "captions.json").write_text(json.dumps({"images": []}))
    with pytest.raises(UserError, match="not a COCO captions file"):
        CocoCaptionsDataModule(str(tmp_path), store_dir=str(tmp_path / "store")).setup()
    with pytest.raises(UserError, match="does not exist"):
        CocoCaptionsDataModule(str(tmp_path / "nowhere"), store_dir=str(tmp_path / "store")).setup()


def test_one_member_per_group_each_epoch():
    sampler = OnePerGroupSampler([0, 0, 0, 1, 2, 2], seed=3)
    draws = []
    for epoch in range(200):
        sampler.set_epoch(epoch)
        picked = list(sampler)
        assert sorted({0: 0, 1: 0, 2: 0, 3: 1, 4: 2, 5: 2}[i] for i in picked) == [0, 1, 2]
        draws.append(tuple(sorted(picked)))
    assert len(set(draws)) == 6  # every combination of one caption of image 0 and one of image 2 shows up
    picks_of_image_0 = [sum(i in draw for draw in draws) for i in (0, 1, 2)]
    assert all(40 < picks < 95 for picks in picks_of_image_0)  # each about 1/3 of 200 epochs (sd ~7)


def test_recall_with_several_captions_per_image_by_hand():
    # Image 0 = (1, 0) has captions t0 = (0.6, 0.8), closer to image 1, and t1 = (1, 0.1); image 1 = (0, 1) has t2 = (0.1, 1).
    image = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])  # each caption row carries its image
    text = torch.tensor([[0.6, 0.8], [1.0, 0.1], [0.1, 1.0]])
    metrics = recall_at_k(image, text, ks=(1,), image_of_row=torch.tensor([7, 7, 3]))
    assert metrics["text_to_image_R@1"] == pytest.approx(2 / 3) and metrics["text_to_image_mean_rank"] == pytest.approx(4 / 3)
    assert metrics["image_to_text_R@1"] == 1.0  # image 0 finds t1 first (a hit, though t0 ranks below t2)
    as_pairs = recall_at_k(image, text, ks=(1,))  # read as three separate pairs instead
    assert as_pairs["image_to_text_R@1"] == pytest.approx(2 / 3)  # row 0's image ranks t1 above t0: a miss
    one_per_pool = recall_at_k(image, text, ks=(1,), pool_size=1, image_of_row=torch.tensor([7, 7, 3]))
    assert one_per_pool["text_to_image_R@1_pool1"] == 1.0 and one_per_pool["image_to_text_R@1_pool1"] == 1.0


def test_one_caption_per_image_gives_the_plain_pairs_metrics():
    generator = torch.Generator().manual_seed(0)
    image, text = torch.randn(40, 8, generator=generator), torch.randn(40, 8, generator=generator)
    for pool_size in (None, 10):
        assert recall_at_k(image, text, pool_size=pool_size, image_of_row=torch.arange(40) * 3) == recall_at_k(image, text, pool_size=pool_size)


@pytest.mark.slow  # a training run: make test stays under 5 minutes (tests/README.md)
def test_coco_gap_logs_train_subset_recall_and_the_data_counts(shared_data, compose_train, tmp_path):
    cfg = compose_train("experiment=coco_gap", f"data.root={shared_data / 'coco_mini'}", "logger=csv",
                        "callbacks.cross_modal_retrieval.train_subset=16")
    metrics = train(cfg)
    assert "train/retrieval/text_to_image_R@1" in metrics["before_fit"] and "train/retrieval/text_to_image_R@1" in metrics["test"]
    fit = metrics["fit"]
    assert fit["train/retrieval/pool_size"] == 8.0
    # the test stage's train-subset R@1 is that of the best checkpoint on 16 training images, all their captions
    datamodule, model = set_up_data(cfg), trained_model(cfg, tmp_path)
    with torch.no_grad():
        parts = [(model.embed(batch), batch["image_id"]) for batch in datamodule.subset_loader("train", 16)]
    image, text = (torch.cat([embedded[key] for embedded, _ in parts]) for key in ("image", "text"))
    image_ids = torch.cat([ids for _, ids in parts])
    assert len(set(image_ids.tolist())) == 16
    expected = recall_at_k(image, text, image_of_row=image_ids)
    for key in ("text_to_image_R@1", "image_to_text_R@1", "text_to_image_mean_rank"):
        assert metrics["test"][f"train/retrieval/{key}"] == pytest.approx(expected[key], abs=1e-6), key
    assert fit["val/retrieval/pool_size"] == 8.0 and "val/geometry/gap" in fit
    with open(next((tmp_path / "csv").rglob("metrics.csv")), newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert any(row.get("data/train_images") == "24.0" for row in rows) and any(row.get("data/unreadable_images") == "0.0" for row in rows)


def test_a_match_is_never_ranked_below_itself_by_rounding():
    # identical image and text embeddings: every match scores the top cosine of its row and column
    x = torch.randn(3000, 64, generator=torch.Generator().manual_seed(5))
    for image_of_row in (None, torch.arange(3000)):
        metrics = recall_at_k(x, x.clone(), ks=(1,), pool_size=90, image_of_row=image_of_row)
        assert metrics["image_to_text_R@1_pool90"] == 1.0 and metrics["text_to_image_R@1_pool90"] == 1.0
