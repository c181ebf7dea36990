"""memegap-geometry: from a run's exported embeddings it gives back the test metrics the run logged; on
constructed clouds it gives the known answers; a user's mistake is one line and exit status 2."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from memegap.studies.modality_gap.geometry_report import main
from memegap.train import train
from tests.conftest import MINI_OVERRIDES, compose_config


@pytest.fixture(scope="module")
def mini_export(tmp_path_factory):
    folder = tmp_path_factory.mktemp("run")
    cfg = compose_config("train.yaml", ["experiment=twemoji_gap", *MINI_OVERRIDES, "logger=none", "test_before_fit=false"], folder)
    return folder / "embeddings" / "test.parquet", train(cfg)["test"]


def test_the_report_of_a_runs_export_gives_its_logged_test_metrics(mini_export, tmp_path):
    parquet, logged = mini_export
    main([str(parquet), "--out", str(tmp_path / "report"), "--pool-size", "8", "--pool-repeats", "10"])
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    for key in ("gap", "alignment", "rmg", "l2i", "gap_top1_share", "gap_top5_share", "effective_rank_image", "effective_rank_text",
                "effective_rank_joint", "uniformity_image", "uniformity_text", "uniformity"):
        assert report[key] == pytest.approx(logged[f"test/geometry/{key}"], rel=1e-5, abs=1e-6), key
    for key in ("image_to_text_R@1", "text_to_image_R@1", "image_to_text_R@5", "text_to_image_median_rank", "image_to_text_R@1_pool8",
                "text_to_image_R@1_pool8"):
        assert report["retrieval"][key] == pytest.approx(logged[f"test/retrieval/{key}"], abs=1e-6), key
    unshifted = next(row for row in report["shift"] if row["lambda"] == 0.0)
    assert unshifted["text_to_image_R@1"] == pytest.approx(logged["test/retrieval/text_to_image_R@1_pool8"], abs=1e-6)
    assert unshifted["gap"] == pytest.approx(report["gap"], abs=1e-6)
    assert report["sampled"]["measures"] == "none" and len(report["gap_vector"]) == report["dimensions"] == 256
    assert (tmp_path / "report" / "cosine_histograms.png").stat().st_size > 0 and (tmp_path / "report" / "shift.png").stat().st_size > 0


def test_known_answers_on_constructed_clouds(tmp_path):
    """Images e_0…e_7 and texts the same vectors scaled by 3: every pair coincides after normalising, so gap 0,
    RMG 0, L2I 0, R@1 1 both ways; eight orthonormal directions: RankMe 8 per modality and joint, mean cosine 0
    within a modality, uniformity −2t = −4; labels give the k-means scores; with the images sampled to 4
    (--exact-up-to 4) the report says so."""
    image = np.eye(8, dtype=np.float32)
    np.save(tmp_path / "image.npy", image)
    np.save(tmp_path / "text.npy", 3 * image)
    np.save(tmp_path / "labels.npy", np.arange(8) % 2)
    main([str(tmp_path / "image.npy"), str(tmp_path / "text.npy"), "--labels", str(tmp_path / "labels.npy"), "--out", str(tmp_path / "r"), "--pool-size", "4"])
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["gap"] == pytest.approx(0.0, abs=1e-7) and report["rmg"] == pytest.approx(0.0, abs=1e-7) and report["l2i"] == pytest.approx(0.0, abs=1e-6)
    assert report["retrieval"]["image_to_text_R@1"] == 1.0 and report["retrieval"]["text_to_image_R@1_pool4"] == 1.0
    assert report["effective_rank_image"] == pytest.approx(8, rel=1e-4) and report["effective_rank_joint"] == pytest.approx(8, rel=1e-4)
    assert report["image_mean_cosine"] == pytest.approx(0.0, abs=1e-7) and report["paired_mean_cosine"] == pytest.approx(1.0)
    assert 0.0 <= report["kmeans_nmi"] <= 1.0 and report["uniformity_image"] == pytest.approx(-4.0, abs=1e-6)  # orthonormal: −2t
    main([str(tmp_path / "image.npy"), str(tmp_path / "text.npy"), "--out", str(tmp_path / "s"), "--exact-up-to", "4", "--pool-size", "4"])
    sampled = json.loads((tmp_path / "s" / "report.json").read_text())["sampled"]
    assert sampled["images"] == 4 and sampled["of"] == 8


def test_uniformity_of_orthonormal_points_is_its_closed_form(tmp_path):
    """N orthonormal unit vectors: every ‖x̂ᵢ − x̂ⱼ‖² = 2, so uniformity = log exp(−2t) = −4 at t = 2."""
    np.save(tmp_path / "image.npy", np.eye(6, dtype=np.float32))
    np.save(tmp_path / "text.npy", np.eye(6, dtype=np.float32)[::-1].copy())
    main([str(tmp_path / "image.npy"), str(tmp_path / "text.npy"), "--out", str(tmp_path / "r"), "--pool-size", "3"])
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["uniformity_image"] == pytest.approx(-4.0, abs=1e-6) and report["uniformity_text"] == pytest.approx(-4.0, abs=1e-6)
    assert report["alignment"] == pytest.approx(2.0) and report["l2i"] == pytest.approx(math.sqrt(2))  # each pair orthogonal


def test_mistakes_are_one_line(tmp_path, capsys):
    np.save(tmp_path / "a.npy", np.ones((4, 8), dtype=np.float32))
    np.save(tmp_path / "short.npy", np.ones((3, 8), dtype=np.float32))
    np.save(tmp_path / "narrow.npy", np.ones((4, 6), dtype=np.float32))
    broken = np.ones((4, 8), dtype=np.float32)
    broken[1, 2] = np.nan
    np.save(tmp_path / "nan.npy", broken)
    import pandas as pd

    pd.DataFrame({"id": ["a"], "embedding": [[1.0, 2.0]]}).to_parquet(tmp_path / "other.parquet")
    cases = [
        ([tmp_path / "a.npy", tmp_path / "short.npy"], "must be paired N×d arrays of one shape"),
        ([tmp_path / "a.npy", tmp_path / "narrow.npy"], "must be paired N×d arrays of one shape"),
        ([tmp_path / "a.npy", tmp_path / "nan.npy"], "NaN or inf"),
        ([tmp_path / "absent.parquet"], "no such file"),
        ([tmp_path / "other.parquet"], "no column modality, position, vector"),
        ([tmp_path / "a.npy"], "give one exported .parquet file, or two .npy files"),
        ([tmp_path / "a.npy", tmp_path / "words.npy"], "holds <U1 values; needs numbers"),
        ([tmp_path / "a.npy", tmp_path / "a.npy", "--labels", tmp_path / "kinds.npy"], "holds <U3 values; needs integers"),
        ([tmp_path / "a.npy", tmp_path / "a.npy", "--out", tmp_path / "a.npy"], "is a file: name a folder"),
    ]
    np.save(tmp_path / "words.npy", np.array([["x"] * 8] * 4))
    np.save(tmp_path / "kinds.npy", np.array(["cat", "dog", "cat", "dog"]))
    for inputs, message in cases:
        with pytest.raises(SystemExit) as exit_info:
            main([*map(str, inputs), "--out", str(tmp_path / "out")] if "--out" not in inputs else list(map(str, inputs)))
        error = capsys.readouterr().err.strip()
        assert exit_info.value.code == 2 and message in error and len(error.splitlines()) == 1, (inputs, error)
    assert not (tmp_path / "out").exists()
