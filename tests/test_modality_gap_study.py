"""The study scripts on a mini trained run: the embedding shift (λ = 0 is the run's own test R@1), the
cone effect of random weights, and memegap-search over the real pictograms."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf, open_dict

from memegap.search import main as search_main
from memegap.train import train
from tests.conftest import MINI_OVERRIDES, compose_config

STUDY = Path(__file__).resolve().parents[1] / "experiments" / "modality_gap"


def study_script(name: str):
    spec = importlib.util.spec_from_file_location(name, STUDY / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def mini_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("run")
    cfg = compose_config("train.yaml", ["experiment=twemoji_gap", *MINI_OVERRIDES, "logger=none", "test_before_fit=false"], run_dir)
    train(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    (run_dir / ".hydra").mkdir(exist_ok=True)
    OmegaConf.save(cfg, run_dir / ".hydra" / "config.yaml")  # as memegap-train's Hydra app writes it
    return run_dir


def test_the_unshifted_row_of_the_shift_sweep_is_the_runs_test_recall(mini_run, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["shift.py", str(mini_run), "--lambdas", "0", "1"])
    study_script("shift").main()
    rows = json.loads((mini_run / "shift" / "shift.json").read_text())
    logged = json.loads((mini_run / "metrics.json").read_text())["test"]
    assert rows[0]["text_to_image_R@1"] == pytest.approx(logged["test/retrieval/text_to_image_R@1_pool8"])
    assert rows[0]["gap"] == pytest.approx(logged["test/geometry/gap"], abs=1e-5) and rows[1]["gap"] < rows[0]["gap"]
    assert (mini_run / "shift" / "shift.png").stat().st_size > 0 and '"rows"' in capsys.readouterr().out


def test_random_weights_put_the_texts_in_a_narrow_cone(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["cone.py", "experiment=twemoji_gap", *MINI_OVERRIDES, "--random-inits", "2", "--out", str(tmp_path)])
    study_script("cone").main()
    measured = json.loads((tmp_path / "cone.json").read_text())
    assert len(measured["random"]) == 2 and (tmp_path / "cone_histograms.png").exists()
    # a randomly initialised MiniLM maps every prompt near one direction; the pretrained one spreads them
    assert all(row["text_mean_cosine"] > measured["pretrained"]["text_mean_cosine"] + 0.3 for row in measured["random"])
    assert "| random weights (2 initialisations) |" in (tmp_path / "cone.md").read_text()


@pytest.mark.realdata
def test_memegap_search_finds_pictograms_by_words_and_keeps_its_index(mini_run, shared_data, tmp_path, capsys, caplog):
    pictograms = shared_data / "pictograms_jocomunico"
    page = tmp_path / "dog.html"
    search_main(["--run", str(mini_run), "--images", str(pictograms), "--k", "4", "--html", str(page), "a dog"])
    lines = capsys.readouterr().out.splitlines()
    hits = [line.split() for line in lines if line.strip()[:1].isdigit()]
    assert len(hits) == 4 and all(Path(hit[2]).is_file() for hit in hits)
    scores = [float(hit[1]) for hit in hits]
    assert scores == sorted(scores, reverse=True)
    assert page.read_text().count("<img src=\"data:image/png;base64,") == 4
    (index_dir,) = (mini_run / "search").glob("*/index.faiss")
    built = index_dir.stat().st_mtime_ns
    with caplog.at_level("INFO", logger="memegap.search"):
        search_main(["--run", str(mini_run), "--images", str(pictograms), "--k", "4", "--html", str(page), "un perro"])
    assert index_dir.stat().st_mtime_ns == built and "reusing the image index" in caplog.text
    capsys.readouterr()
    words = tmp_path / "words.txt"
    words.write_text("A picture of dog\nA picture of cat\nA picture of house\n")
    search_main(["--run", str(mini_run), "--images", str(pictograms), "--image", hits[0][2], "--texts", str(words), "--k", "3"])
    nearest = [line.split(None, 2) for line in capsys.readouterr().out.splitlines() if line.strip()[:1].isdigit()]
    assert sorted(text for _, _, text in nearest) == ["A picture of cat", "A picture of dog", "A picture of house"]
