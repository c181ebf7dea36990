"""data=pairs_table: a user's own image–text table (CSV, Parquet, JSONL) in, served like the built-in
sources: paths relative to the table or absolute, an image with several texts, split and group columns,
bad rows and unreadable images counted, a missing column named (issue 37, part 1)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch
from PIL import Image

from memegap.data.pairs_table import PairsTableDataModule
from memegap.data.splits import SPLITS
from memegap.errors import UserError
from memegap.train import train
from tests.conftest import compose_config


def write_images(folder: Path, count: int) -> list[Path]:
    """count small PNGs, each one flat colour (so that a test can tell them apart by a pixel)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(count):
        path = folder / f"{k:03d}.png"
        Image.new("RGB", (20, 20), (k % 256, (7 * k) % 256, (13 * k) % 256)).save(path)
        paths.append(path)
    return paths


def write_table(path: Path, frame: pd.DataFrame) -> Path:
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    elif path.suffix == ".parquet":
        frame.to_parquet(path)
    else:
        frame.to_json(path, orient="records", lines=True)
    return path


@pytest.mark.parametrize("suffix", [".csv", pytest.param(".parquet", marks=pytest.mark.slow), pytest.param(".jsonl", marks=pytest.mark.slow)])
def test_a_table_of_pairs_is_read_split_by_group_and_counted(tmp_path, suffix):
    images = write_images(tmp_path / "pictures", 40)
    rows = [{"image": f"pictures/{path.name}", "text": f"colour {k}", "group": f"g{k // 4}"} for k, path in enumerate(images)]
    rows[5]["image"] = str(images[5].resolve())  # an absolute path
    rows += [{"image": "pictures/000.png", "text": "a second caption of picture 0", "group": "g0"},  # two texts, one image
             {"image": "pictures/missing.png", "text": "gone", "group": "g99"},
             {"image": None, "text": "no image", "group": "g98"},
             {"image": "pictures/001.png", "text": "", "group": "g0"}]
    table = write_table(tmp_path / f"pairs{suffix}", pd.DataFrame(rows))
    module = PairsTableDataModule(str(table), image_size=8, batch_size=4, store_dir=str(tmp_path / "store"))
    module.setup()
    assert module.counts["rows_without_image"] == 1 and module.counts["rows_without_text"] == 1
    assert module.counts["unreadable_images"] == 1 and module.counts["rows_of_unreadable_images"] == 1
    assert sum(module.counts[f"{split}_pairs"] for split in SPLITS) == 41 and sum(module.counts[f"{split}_images"] for split in SPLITS) == 40
    group_of_text, group_splits = {row["text"]: row["group"] for row in rows}, {}
    for split, dataset in module.datasets.items():
        for text in dataset.texts:
            group_splits.setdefault(group_of_text[text], set()).add(split)
    assert all(len(splits) == 1 for splits in group_splits.values())  # a group of the table never straddles two splits
    assert len({split for splits in group_splits.values() for split in splits}) == 3
    where = next(split for split, dataset in module.datasets.items() if "a second caption of picture 0" in dataset.texts)
    dataset = module.datasets[where]
    first, second = dataset.texts.index("colour 0"), dataset.texts.index("a second caption of picture 0")
    assert dataset[first]["image_id"] == dataset[second]["image_id"]  # the two texts share their image
    assert torch.equal(dataset[first]["image"][:, 0, 0], torch.tensor([0, 0, 0], dtype=torch.uint8))  # picture 0's colour
    assert dataset.ids[first] == "1"  # the data row number


def test_a_split_column_is_used_as_it_is_and_a_bad_value_is_named(tmp_path):
    images = write_images(tmp_path / "p", 12)
    frame = pd.DataFrame({"file": [str(path) for path in images], "caption": [f"c{k}" for k in range(12)],
                          "part": ["train"] * 8 + ["val"] * 2 + ["test"] * 2})
    table = write_table(tmp_path / "mine.csv", frame)
    module = PairsTableDataModule(str(table), image_column="file", text_column="caption", split_column="part", image_size=8, store_dir=str(tmp_path / "s"))
    module.setup()
    assert [len(module.datasets[split]) for split in SPLITS] == [8, 2, 2]
    frame.loc[3, "part"] = "training"
    write_table(table, frame)
    with pytest.raises(UserError, match=rf"^{table}: data row 4, column part: 'training' is not one of train, val, test"):
        PairsTableDataModule(str(table), image_column="file", text_column="caption", split_column="part", store_dir=str(tmp_path / "s")).setup()


def test_a_missing_column_names_the_table_the_column_and_what_it_has(tmp_path):
    table = write_table(tmp_path / "t.csv", pd.DataFrame({"path": ["a.png"], "caption": ["x"]}))
    with pytest.raises(UserError, match=rf"^{table}: no column image \(it has: path, caption\); name the columns with data.image_column"):
        PairsTableDataModule(str(table), text_column="caption").setup()


@pytest.mark.slow  # a training run: make test stays under 5 minutes (tests/README.md)
def test_a_dual_encoder_trains_on_a_users_table_by_config_alone(tmp_path):
    images = write_images(tmp_path / "pictures", 48)
    table = write_table(tmp_path / "pairs.jsonl", pd.DataFrame({"image": [f"pictures/{p.name}" for p in images], "text": [f"colour {k}" for k in range(48)]}))
    cfg = compose_config("train.yaml", ["experiment=twemoji_gap", "data=pairs_table", f"data.table={table}", "data.image_size=16",
                                        "data.batch_size=8", "+trainer.fast_dev_run=true", "logger=none", "test_before_fit=false",
                                        "callbacks.cross_modal_retrieval.pool_size=4", "extras.print_config=false", f"paths.data_dir={tmp_path / 'data'}"],
                         tmp_path / "run")
    metrics = train(cfg)
    assert torch.isfinite(torch.tensor(metrics["test"]["test/loss"]))
    assert "test/retrieval/image_to_text_R@1" in metrics["test"] and "test/geometry/gap" in metrics["test"]


def test_a_wrong_table_refuses_the_start_and_leaves_no_run(tmp_path):
    cfg = compose_config("train.yaml", ["experiment=twemoji_gap", "data=pairs_table", f"data.table={tmp_path / 'nothing.csv'}", "logger=none",
                                        f"paths.data_dir={tmp_path / 'data'}"], tmp_path / "run")
    with pytest.raises(UserError, match=r"nothing.csv: no such table"):
        train(cfg)
    assert not (tmp_path / "run" / "run_state.json").exists() and not (tmp_path / "data").exists()


@pytest.mark.slow
def test_a_table_of_the_coco_mini_captions_trains_as_data_coco_captions(shared_data, tmp_path):
    """The shared COCO mini captions written as a pairs table (its split and image as columns) train the same
    dual encoder, with the same settings, to the test R@1 of data=coco_captions within noise (two binomial
    standard errors over the test images)."""
    from memegap.data.coco_captions import read_coco_captions

    root = shared_data / "coco_mini"
    images, _ = read_coco_captions(root / "captions.json", root, (0.8, 0.1, 0.1))
    rows = [{"image": str(image.path), "text": caption, "split": image.split, "group": str(image.image_id)} for image in images for caption in image.captions]
    table = write_table(tmp_path / "coco_pairs.csv", pd.DataFrame(rows))
    common = ["experiment=twemoji_gap", "data.image_size=32", "data.batch_size=16", "trainer.max_epochs=3", "logger=none", "test_before_fit=false",
              "callbacks.cross_modal_retrieval.pool_size=8", "callbacks.modality_map.maps=[pca]", "extras.print_config=false",
              f"paths.data_dir={tmp_path / 'data'}"]
    coco = train(compose_config("train.yaml", [*common, "data=coco_captions", f"data.root={root}"], tmp_path / "coco"))["test"]
    pairs = train(compose_config("train.yaml", [*common, "data=pairs_table", f"data.table={table}"], tmp_path / "pairs"))["test"]
    test_images = sum(image.split == "test" for image in images)
    for key in ("test/retrieval/image_to_text_R@1", "test/retrieval/text_to_image_R@1"):
        p = (coco[key] + pairs[key]) / 2
        standard_error = max((p * (1 - p) / test_images) ** 0.5, 1.0 / test_images)
        assert abs(coco[key] - pairs[key]) <= 2 * 2**0.5 * standard_error, (key, coco[key], pairs[key], test_images)
