"""Every count, size and time of a command's options is checked by argparse at start-up: its usage and
one error line naming the option and its range, exit status 2, nothing done."""

from __future__ import annotations

import sys

import pytest

from memegap.collect.cli import main as collect_main
from memegap.studies.modality_gap import cone
from memegap.studies.modality_gap.search import main as search_main
from memegap.studies.posts.cli import main as posts_main


def refused(call, capsys) -> str:
    with pytest.raises(SystemExit) as stopped:
        call()
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and ": error: argument " in err.strip().splitlines()[-1], err  # argparse's usage, then one error line
    return err.strip().splitlines()[-1]


@pytest.mark.parametrize("argv, says", [
    (["download", "--table", "t.csv", "--workers", "0"], "--workers: 0 is out of range: must be ≥ 1"),
    (["download", "--table", "t.csv", "--max-attempts", "-1"], "--max-attempts: -1 is out of range: must be ≥ 1"),
    (["download", "--table", "t.csv", "--read-timeout", "0"], "--read-timeout: 0 is out of range: must be ≥ 0.001"),
    (["twitter", "--out", "x", "--page-size", "500"], "--page-size: 500 is out of range: must be between 5 and 100"),
])
def test_memegap_collect_checks_its_counts(argv, says, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert says in refused(lambda: collect_main(argv), capsys)
    assert list(tmp_path.iterdir()) == []  # nothing created


def test_the_search_and_the_posts_study_check_their_counts(tmp_path, capsys):
    assert "--k: 0 is out of range: must be ≥ 1" in refused(lambda: search_main(["--run", str(tmp_path), "--k", "0", "a dog"]), capsys)
    assert "--mlp-epochs: 0 is out of range" in refused(lambda: posts_main(["run", "--run", str(tmp_path), "--mlp-epochs", "0"]), capsys)
    assert "--dim: 'wide' is not a whole number" in refused(lambda: posts_main(["run", "--run", str(tmp_path), "--dim", "wide"]), capsys)


def test_the_cone_script_checks_its_count(capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["cone.py", "experiment=twemoji_gap", "--random-inits", "-2"])
    assert "--random-inits: -2 is out of range: must be ≥ 0" in refused(cone.main, capsys)


def run_of(folder, model: str, data: str):
    """A run dir as Hydra records it (.hydra/config.yaml and hydra.yaml's choices), without checkpoints."""
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "config.yaml").write_text("model: {}\ndata: {}\n")
    (folder / ".hydra" / "hydra.yaml").write_text(f"hydra:\n  runtime:\n    choices:\n      model: {model}\n      data: {data}\n")
    return folder


def one_line_error(call, capsys) -> str:
    with pytest.raises(SystemExit) as stopped:
        call()
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


def test_a_study_command_given_a_run_of_the_wrong_kind_says_what_it_needs(tmp_path, capsys, monkeypatch):
    """They ended in a KeyError or a state-dict traceback."""
    from memegap.studies.modality_gap import shift
    from memegap.studies.twemoji import twemoji_errors

    memes = run_of(tmp_path / "memes_run", "siamese_triplet", "memes")
    arasaac = run_of(tmp_path / "arasaac_run", "dual_encoder", "arasaac")
    monkeypatch.setattr(sys, "argv", ["shift.py", str(memes)])
    assert "shift.py needs a run of model=dual_encoder or model=clip_dora; " in one_line_error(shift.main, capsys)
    monkeypatch.setattr(sys, "argv", ["twemoji_errors.py", str(arasaac)])
    err = one_line_error(twemoji_errors.main, capsys)
    assert "twemoji_errors.py needs a run of data=twemoji; " in err and "is a run of model=dual_encoder data=arasaac" in err
    classifier = run_of(tmp_path / "classifier_run", "resnet_classifier", "cifar100")
    err = one_line_error(lambda: search_main(["--run", str(classifier), "--images", str(tmp_path), "a dog"]), capsys)
    assert "memegap-search needs a run of model=dual_encoder or model=clip_dora" in err and "model=resnet_classifier" in err


def test_the_cone_script_given_another_kind_of_model_says_what_it_needs(capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["cone.py", "experiment=memes_triplet"])
    err = one_line_error(cone.main, capsys)
    assert "cone.py measures a dual encoder (model=dual_encoder or model=clip_dora); these overrides compose memegap.models.siamese_triplet.SiameseTriplet" in err
