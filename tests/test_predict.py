"""memegap-predict: predicting a run's own test split reproduces the test step's metrics (one model of each kind),
new folders, tables and texts are read, and a user's mistake is one line, exit status 2, nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy.stats import spearmanr

from memegap.predict import main
from tests.conftest import MINI_OVERRIDES, SINGLE_MODALITY_MINI_OVERRIDES, compose_config, experiment_data, trained_run


def assert_same_vectors_as_the_test_step(frame: pd.DataFrame, run_dir: Path) -> None:
    """Predict's embeddings are those the run's test step exported (embeddings/test.parquet), id by id: one code path."""
    exported = pd.read_parquet(run_dir / "embeddings" / "test.parquet").set_index("id")
    assert sorted(frame["id"]) == sorted(exported.index)
    ours = np.stack(frame["embedding"].to_numpy())
    theirs = np.stack(exported.loc[frame["id"], "vector"].to_numpy())
    assert np.allclose(ours, theirs, atol=1e-5), np.abs(ours - theirs).max()


@pytest.fixture(scope="module")
def dual_run(tmp_path_factory) -> tuple[Path, dict]:
    run_dir = tmp_path_factory.mktemp("dual")
    return run_dir, trained_run(run_dir, ["experiment=twemoji_gap", *MINI_OVERRIDES, "logger=none", "test_before_fit=false"])


def test_the_dual_encoders_test_split_gives_its_logged_recall(dual_run, tmp_path):
    run_dir, metrics = dual_run
    out = tmp_path / "p.parquet"
    main([str(run_dir), "--out", str(out), "--top-k", "3", "--embeddings"])
    frame = pd.read_parquet(out)
    images, texts = frame[frame["modality"] == "image"], frame[frame["modality"] == "text"]
    assert len(images) == len(texts) == 24 and len(images["embedding"].iloc[0]) == 256
    image_of = dict(zip(frame["id"], frame["image_id"]))
    image_to_text = np.mean([image_of[top[0]] == own for top, own in zip(images["top_k"], images["image_id"])])
    text_to_image = np.mean([image_of[top[0]] == own for top, own in zip(texts["top_k"], texts["image_id"])])
    assert image_to_text == pytest.approx(metrics["test"]["test/retrieval/image_to_text_R@1"], abs=1e-6)
    assert text_to_image == pytest.approx(metrics["test"]["test/retrieval/text_to_image_R@1"], abs=1e-6)
    assert all(np.all(np.diff(scores) <= 0) for scores in images["top_k_scores"])  # best first


def test_new_images_and_texts_are_ranked_against_each_other(dual_run, tmp_path):
    run_dir, _ = dual_run
    folder = tmp_path / "new"
    (folder / "sub").mkdir(parents=True)
    for name, colour in (("red.png", (255, 0, 0)), ("sub/blue.png", (0, 0, 255))):
        Image.new("RGB", (40, 40), colour).save(folder / name)
    (tmp_path / "words.txt").write_text("A picture of red\n\nA picture of blue\nA picture of a dog\n")
    out = tmp_path / "p.csv"
    main([str(run_dir), "--images", str(folder), "--texts", str(tmp_path / "words.txt"), "--out", str(out), "--top-k", "2"])
    frame = pd.read_csv(out)
    assert frame["id"].tolist() == ["red.png", "sub/blue.png", "1", "3", "4"]  # texts keep their line numbers
    assert all(set(json.loads(top)) <= {"1", "3", "4"} for top in frame.loc[:1, "top_k"])
    assert all(set(json.loads(top)) <= {"red.png", "sub/blue.png"} for top in frame.loc[2:, "top_k"])


def test_mistakes_are_one_line_and_leave_the_output_as_it_was(dual_run, tmp_path, capsys):
    run_dir, _ = dual_run
    out = tmp_path / "kept.parquet"
    out.write_text("the user's file")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.png").write_bytes(b"not a png")
    table = tmp_path / "t.csv"
    table.write_text("picture,caption\nx.png,a dog\n")
    cases = [
        ([str(run_dir), "--out", str(out)], "exists: pass --overwrite"),
        ([str(tmp_path), "--out", str(tmp_path / "n.parquet")], "is not a run dir"),
        ([str(run_dir), "--images", str(broken), "--out", str(out), "--overwrite"], "a.png is not a readable image"),
        ([str(run_dir), "--table", str(table), "--out", str(out), "--overwrite"], "no column image"),
        ([str(run_dir), "--out", str(tmp_path / "p.txt")], "must end in .parquet or .csv"),
    ]
    for argv, message in cases:
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        error = capsys.readouterr().err.strip()
        assert exit_info.value.code == 2 and message in error and len(error.splitlines()) == 1, (argv, error)
        assert out.read_text() == "the user's file"


def test_a_classifier_predicts_its_logged_test_accuracy(tmp_path):
    run_dir = tmp_path / "run"
    overrides = ["experiment=cifar100_cnn", *SINGLE_MODALITY_MINI_OVERRIDES, *experiment_data("cifar100_cnn", tmp_path / "data", None),
                 "logger=none"]
    metrics = trained_run(run_dir, overrides)
    out = tmp_path / "p.parquet"
    main([str(run_dir), "--out", str(out), "--top-k", "2", "--embeddings"])
    frame = pd.read_parquet(out)
    assert (frame["predicted"] == frame["label"]).mean() == pytest.approx(metrics["test"]["test/acc"], abs=1e-6)
    assert_same_vectors_as_the_test_step(frame, run_dir)
    assert np.allclose([sum(p) for p in frame["probabilities"]], 1.0, atol=1e-5)
    assert (frame["top_k_classes"].map(lambda classes: classes[0]) == frame["predicted"]).all()


def test_a_likes_model_predicts_its_logged_spearman(shared_data, tmp_path):
    run_dir = tmp_path / "run"
    overrides = ["experiment=memes_triplet", *SINGLE_MODALITY_MINI_OVERRIDES, *experiment_data("memes_triplet", tmp_path / "data", shared_data),
                 "logger=none"]
    metrics = trained_run(run_dir, overrides)
    out = tmp_path / "p.parquet"
    main([str(run_dir), "--out", str(out), "--embeddings"])
    frame = pd.read_parquet(out)
    assert_same_vectors_as_the_test_step(frame, run_dir)
    rho = spearmanr(frame["predicted_likes"], frame["likes"]).statistic
    assert rho == pytest.approx(metrics["test"]["test/popularity/spearman"], abs=1e-6)
    assert frame["neighbours"].map(len).eq(10).all()
    with pytest.raises(SystemExit):
        main([str(run_dir), "--texts", str(out), "--out", str(tmp_path / "q.parquet")])
