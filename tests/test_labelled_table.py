"""data=labelled_table: a user's table of images and classes, read like the built-in classification sources,
with what it leaves out counted and its mistakes named in one line; a classifier learns real pictures from it.
The pictures are real Twemoji PNGs of three Unicode blocks (flags, faces, animals) from the twemoji package."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from memegap.data.labelled_table import LabelledTableDataModule
from memegap.errors import UserError
from memegap.studies.classifiers.twemoji_blocks import twemoji_blocks
from memegap.train import train
from tests.conftest import compose_config

LABELLED_RUN = ["data=labelled_table", "model=cifar_cnn", "callbacks=classification", "logger=csv", "task_name=labelled_table",
                "optimized_metric=val/acc", "extras.print_config=false", "data.image_size=32", "data.batch_size=16"]


def write_table(folder: Path, per_class: int, suffix: str = ".csv", **extra_columns) -> tuple[Path, pd.DataFrame]:
    """A table of `per_class` pictures of each block, image paths relative to the table (copied beside it)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pictures").mkdir(exist_ok=True)
    rows = []
    for label, paths in twemoji_blocks().items():
        for path in paths[:per_class]:
            (folder / "pictures" / path.name).write_bytes(path.read_bytes())
            rows.append({"image": f"pictures/{path.name}", "label": label})
    frame = pd.DataFrame(rows).assign(**extra_columns) if extra_columns else pd.DataFrame(rows)
    table = folder / f"labels{suffix}"
    frame.to_parquet(table) if suffix == ".parquet" else frame.to_csv(table, index=False)
    return table, frame


def test_a_table_is_read_stratified_and_what_it_leaves_out_is_counted(tmp_path):
    table, frame = write_table(tmp_path, per_class=20)
    extra = pd.DataFrame([{"image": "", "label": "faces"}, {"image": "pictures/missing.png", "label": "faces"},
                          {"image": frame["image"][0], "label": ""}])
    pd.concat([frame, extra]).to_csv(table, index=False)
    data = LabelledTableDataModule(table=str(table), image_size=32, store_dir=str(tmp_path / "store"))
    data.setup()
    assert data.class_names == ["animals", "faces", "flags"]  # the values, sorted
    sizes = {split: len(data.datasets[split]) for split in ("train", "val", "test")}
    assert sizes == {"train": 48, "val": 6, "test": 6}  # 80/10/10 of 20 per class, stratified
    for split in ("val", "test"):
        assert torch.bincount(data.datasets[split].labels, minlength=3).tolist() == [2, 2, 2]
    assert data.counts["rows_without_image"] == 1 and data.counts["rows_without_label"] == 1
    assert data.counts["unreadable_images"] == 1 and data.counts["rows_of_unreadable_images"] == 1
    item = data.datasets["test"][0]
    assert item["image"].dtype == torch.uint8 and item["image"].shape == (3, 32, 32) and item["id"].isdigit()


def test_a_split_column_and_a_given_class_list_are_used_as_they_are(tmp_path):
    table, frame = write_table(tmp_path, per_class=6, suffix=".parquet", split=(["train"] * 4 + ["val", "test"]) * 3)
    data = LabelledTableDataModule(table=str(table), classes=["faces", "flags"], image_size=32, store_dir=str(tmp_path / "store"))
    data.setup()
    assert data.class_names == ["faces", "flags"] and data.counts["rows_of_other_classes"] == 6  # the animals
    assert [len(data.datasets[split]) for split in ("train", "val", "test")] == [8, 2, 2]


def test_mistakes_name_the_table_and_what_to_do(tmp_path):
    table, frame = write_table(tmp_path, per_class=3)
    frame.rename(columns={"label": "class"}).to_csv(tmp_path / "renamed.csv", index=False)
    with pytest.raises(UserError, match=r"renamed.csv: no column label \(it has: image, class\); name the columns with data.image_column"):
        LabelledTableDataModule(table=str(tmp_path / "renamed.csv")).check_inputs()
    frame.assign(split="training").to_csv(tmp_path / "bad_split.csv", index=False)
    with pytest.raises(UserError, match=r"bad_split.csv: data row 1, column split: 'training' is not one of train, val, test"):
        LabelledTableDataModule(table=str(tmp_path / "bad_split.csv")).check_inputs()
    frame.assign(split="train").to_csv(tmp_path / "no_val.csv", index=False)
    with pytest.raises(UserError, match="the val split has no readable image"):
        LabelledTableDataModule(table=str(tmp_path / "no_val.csv"), image_size=32, store_dir=str(tmp_path / "store")).setup()
    frame.assign(label="faces").to_csv(tmp_path / "one_class.csv", index=False)
    with pytest.raises(UserError, match="holds one class"):
        LabelledTableDataModule(table=str(tmp_path / "one_class.csv")).check_inputs()


def test_a_wrong_table_refuses_the_start_and_leaves_no_run(tmp_path):
    cfg = compose_config("train.yaml", [*LABELLED_RUN, f"data.table={tmp_path / 'absent.csv'}", f"paths.data_dir={tmp_path / 'data'}"], tmp_path / "run")
    with pytest.raises(UserError, match="absent.csv: no such table"):
        train(cfg)
    assert not (tmp_path / "run" / "run_state.json").exists() and not (tmp_path / "data").exists()


@pytest.mark.slow
def test_the_cifar_cnn_learns_the_pictures_of_a_table_well_above_chance(tmp_path):
    """180 real pictures of three kinds through the table source: test accuracy beats chance (1/3) by far."""
    table, _ = write_table(tmp_path / "data", per_class=60)
    cfg = compose_config("train.yaml", [*LABELLED_RUN, f"data.table={table}", f"data.store_dir={tmp_path / 'store'}",
                                        "trainer.max_epochs=6"], tmp_path / "run")
    metrics = train(cfg)
    assert metrics["test"]["test/acc"] > 0.7, metrics["test"]  # chance 1/3; 6 test pictures of each class
