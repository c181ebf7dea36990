"""Every run writes its val and test embeddings (callbacks.embedding_export), sends the test rows to W&B as a
table and, with logger.wandb.log_model, the files as an artifact; the modality map draws both modalities
before and after training. Read back, the files give the numbers the callbacks measured."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from memegap.metrics.geometry import alignment, modality_gap
from memegap.train import train
from memegap.utils.embedding_file import embedding_table, read_embedding_file
from memegap.utils.wandb_offline import find_run_files, read_artifacts, read_history


@pytest.fixture(scope="module")
def exported_run(tmp_path_factory):
    """One mini dual-encoder run (Twemoji, 24 pairs a split, 32 px), before-fit test on, W&B offline with log_model."""
    from tests.conftest import MINI_OVERRIDES, compose_config

    folder = tmp_path_factory.mktemp("export")
    cfg = compose_config("train.yaml", ["experiment=twemoji_gap", *MINI_OVERRIDES, "logger=wandb", "logger.wandb.log_model=true"], folder)
    metrics = train(cfg)
    return folder, metrics


def test_the_test_file_gives_back_the_measured_gap_and_alignment(exported_run):
    folder, metrics = exported_run
    table = pq.read_table(folder / "embeddings" / "test.parquet")
    assert table.column_names[:6] == ["id", "split", "modality", "position", "image_id", "vector"]
    vector_type = table.schema.field("vector").type
    assert pa.types.is_fixed_size_list(vector_type) and vector_type.value_type == pa.float32() and vector_type.list_size == 256
    frame = table.to_pandas()
    assert sorted(frame["modality"].unique()) == ["image", "text"] and set(frame["split"]) == {"test"}
    assert frame.groupby("modality").size().tolist() == [24, 24]
    assert frame["id"].str.len().min() > 0 and not frame["id"].str.startswith("test/").any()  # the source's ids, not positions
    vectors = {name: torch.from_numpy(values) for name, values in read_embedding_file(folder / "embeddings" / "test.parquet").vectors.items()}
    gap, _ = modality_gap(vectors["image"], vectors["text"])
    assert gap == pytest.approx(metrics["test"]["test/geometry/gap"], abs=1e-5)
    assert alignment(vectors["image"], vectors["text"]) == pytest.approx(metrics["test"]["test/geometry/alignment"], abs=1e-5)
    before = read_embedding_file(folder / "embeddings" / "test_before_fit.parquet").vectors
    gap_before, _ = modality_gap(torch.from_numpy(before["image"]), torch.from_numpy(before["text"]))
    assert gap_before == pytest.approx(metrics["before_fit"]["test/geometry/gap"], abs=1e-5)
    val = pq.read_table(folder / "embeddings" / "val.parquet").to_pandas()
    assert set(val["split"]) == {"val"} and len(val) == 48


def test_the_offline_wandb_run_holds_the_table_and_the_artifact(exported_run):
    folder, _ = exported_run
    (run_file,) = find_run_files(folder)
    deadline = time.monotonic() + 20
    while True:  # wandb.finish() can return a few ms before the last records are written
        tables = [row for row in read_history(run_file) if "test/embeddings/_type" in row]  # a table's record, its keys flattened
        artifacts = [artifact for artifact in read_artifacts(run_file) if artifact["type"] == "embeddings"]
        if (tables and artifacts) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert tables and tables[-1]["test/embeddings/_type"] == "table-file"
    assert tables[-1]["test/embeddings/nrows"] == 48 and tables[-1]["test/embeddings/ncols"] == 4  # 24 images + 24 texts; id, modality, vector, thumbnail (32 px)
    assert artifacts and artifacts[-1]["name"].startswith("embeddings-")
    assert sorted(artifacts[-1]["files"]) == ["test.parquet", "test_before_fit.parquet", "val.parquet"]


def test_the_modality_map_is_drawn_before_and_after_training(exported_run):
    folder, _ = exported_run
    picture = folder / "geometry" / "modalities.png"
    assert picture.stat().st_size > 10_000


def test_opting_out_writes_nothing(compose_train, tmp_path):
    cfg = compose_train("logger=csv", "test_before_fit=false", "data.max_per_split=12", "callbacks.embedding_export.splits=[]")
    train(cfg)
    assert not (tmp_path / "embeddings").exists()


def test_rows_follow_the_format_for_a_classifier_and_ids_default_to_positions():
    """One modality with labels; no ids from the data: "<split>/<position>"."""
    features = torch.randn(5, 3)
    table = embedding_table("val", {"image": features}, {"label": torch.tensor([0, 1, 1, 2, 0]), "logits": torch.randn(5, 3)}, None)
    frame = table.to_pandas()
    assert frame["id"].tolist() == [f"val/{k}" for k in range(5)] and frame["label"].tolist() == [0, 1, 1, 2, 0]
    assert "logits" not in frame.columns and frame["image_id"].isna().all()
    assert np.allclose(np.stack(frame["vector"].to_numpy()), features.numpy())
    assert isinstance(frame, pd.DataFrame)
