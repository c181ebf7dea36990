"""The summary scripts of the posts and memes-likes studies: the mean ± standard deviation of their runs,
argparse help, and one line with exit status 2 for input they cannot summarise (never an empty table
with exit 0, nor a traceback)."""

from __future__ import annotations

import json
import sys

import pytest

from memegap.studies.memes_likes import summarize as memes_summary
from memegap.studies.posts import summarize as posts_summary


def run(module, argv: list[str], monkeypatch, capsys) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["summarize.py", *argv])
    try:
        module.main()
        status = 0
    except SystemExit as stop:
        status = stop.code
    out, err = capsys.readouterr()
    return status, out, err


def posts_results(seed: int, acc: float) -> dict:
    scores = {"val": {"acc": acc}, "test": {"acc": acc, "f1_macro": acc / 2}}
    influencer = {"threshold": 0.3, "sweeps": {}, "test": {"precision": acc, "recall": acc, "hamming_loss": 1 - acc}}
    return {"settings": {"seed": seed, "fusion_weight": 0.5}, "counts": {"posts": {"train": 10, "val": 4, "test": 4}},
            "posts": {"image": scores, "late fusion, λ = 0.50": scores}, "influencers": {"fusion": influencer}}


def test_the_posts_summary_is_the_mean_and_spread_of_its_runs(tmp_path, monkeypatch, capsys):
    folders = []
    for seed, acc in ((1, 0.5), (2, 0.7)):
        folder = tmp_path / f"seed{seed}"
        folder.mkdir()
        (folder / "results.json").write_text(json.dumps(posts_results(seed, acc)))
        folders.append(str(folder))
    status, out, _ = run(posts_summary, folders, monkeypatch, capsys)
    # mean 0.6, sample standard deviation sqrt(((0.1)^2 + (0.1)^2) / 1) = 0.1414
    assert status == 0 and "| image | 0.600 ± 0.141 | 0.600 ± 0.141 | 0.300 ± 0.071 |" in out
    assert "| late fusion | 0.600 ± 0.141 |" in out and "2 runs (seeds 1, 2)" in out


@pytest.mark.parametrize("argv, says", [([], "required: folders"), (["{tmp}/missing"], "no results.json")])
def test_the_posts_summary_refuses_what_it_cannot_read_in_one_line(argv, says, tmp_path, monkeypatch, capsys):
    status, out, err = run(posts_summary, [a.format(tmp=tmp_path) for a in argv], monkeypatch, capsys)
    assert status == 2 and says in err and "Traceback" not in err and out == ""


def test_the_posts_summary_has_help(monkeypatch, capsys):
    status, out, _ = run(posts_summary, ["--help"], monkeypatch, capsys)
    assert status == 0 and "results.json" in out


def memes_report(spearman: float) -> dict:
    model = {"overall": {"spearman": spearman, "mae_log": 1.0, "pairwise_acc": 0.6}, "bins": [{"precision": 0.5}, {"precision": 0.25}]}
    baseline = {"overall": {m + s: 0.1 for m in memes_summary.MEASURES for s in ("", "_low", "_high")}, "bins": [{"precision": 0.1}, {"precision": 0.2}]}
    return {"this model (kNN)": model, "training mean": baseline}


def test_the_memes_summary_is_the_mean_and_spread_of_its_seeds(tmp_path, monkeypatch, capsys):
    for seed, spearman in ((1, 0.2), (2, 0.3)):
        (tmp_path / f"run{seed}" / "popularity").mkdir(parents=True)
        (tmp_path / f"run{seed}" / "popularity" / "test_report.json").write_text(json.dumps(memes_report(spearman)))
    status, out, _ = run(memes_summary, [f"cosine={tmp_path}/run*"], monkeypatch, capsys)
    assert status == 0 and "| cosine | 2 | 0.250 ± 0.071 | 1.000 ± 0.000 | 0.600 ± 0.000 | 0.50 / 0.25 |" in out
    assert "| baseline: training mean | – | 0.100 [0.100, 0.100]" in out


@pytest.mark.parametrize("argv, says", [
    ([], "give name=glob settings"),
    (["cosine={tmp}/nothing*"], "no finished memes run matches"),
    (["cosine"], "is not name=glob"),
    (["--grid", "{tmp}"], "holds no finished memes run"),
])
def test_the_memes_summary_refuses_what_matches_nothing_in_one_line(argv, says, tmp_path, monkeypatch, capsys):
    status, out, err = run(memes_summary, [a.format(tmp=tmp_path) for a in argv], monkeypatch, capsys)
    assert status == 2 and says in err and "Traceback" not in err and out == ""
