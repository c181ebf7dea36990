"""A user's mistake is one line naming it, never a traceback (issue 34, parts 4-5): an empty table, W&B
online without a login, another kind of model's checkpoint, a missing or folder checkpoint given to a
study command, a release onto a file, a table of the wrong kind of run, a report that would be replaced."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest
import torch
import yaml

from memegap.data.image_store import ImageStore
from memegap.data.memes_table import read_memes_table
from memegap.errors import UserError
from memegap.loggers import WandbLogger
from memegap.utils.run_dir import CONFIG_KEY, check_checkpoint_config, model_and_data_config
from memegap.utils.trained_run import trained_model
from tests.conftest import compose_config


def test_an_empty_memes_table_is_named(tmp_path):
    table = tmp_path / "memes.csv"
    table.write_text("id,created_utc,author,ups,title,file\n")
    with pytest.raises(UserError, match=rf"^{table}: no memes in the table \(0 rows skipped as bad\)"):
        read_memes_table(table)


def test_a_store_of_no_images_is_refused_before_litdata(tmp_path):
    with pytest.raises(UserError, match=r"no images to pack: the source lists none"):
        ImageStore(tmp_path, "mine", 32).ensure([])


def test_wandb_online_without_a_login_is_one_line(tmp_path, monkeypatch):
    for name in ("WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    with pytest.raises(UserError, match=r"^WANDB_MODE=online .* but W&B has no login on this machine: run `wandb login`"):
        WandbLogger(mode="online", save_dir=str(tmp_path))
    (tmp_path / "netrc").write_text("machine api.wandb.ai\n  login user\n  password abc\n")
    WandbLogger(mode="online", save_dir=str(tmp_path))  # a login: no refusal (nothing is contacted before the run starts)


def test_allow_config_change_never_loads_another_kind_of_model(tmp_path):
    memes = compose_config("train.yaml", ["experiment=memes_triplet"], tmp_path)
    twemoji = compose_config("train.yaml", ["experiment=twemoji_gap", "allow_config_change=true"], tmp_path)
    with pytest.raises(UserError, match=r"^memes.ckpt is a checkpoint of SiameseTriplet, not of this config's DualEncoder") as refused:
        check_checkpoint_config({CONFIG_KEY: model_and_data_config(memes)}, "memes.ckpt", twemoji)
    assert len(str(refused.value)) < 600


@pytest.mark.parametrize("kind", ["missing", "folder", "foreign"])
def test_a_study_commands_checkpoint_is_checked_before_any_work(tmp_path, kind):
    cfg = compose_config("train.yaml", ["experiment=twemoji_gap"], tmp_path)
    checkpoint = tmp_path / "x.ckpt"
    if kind == "folder":
        checkpoint.mkdir()
    elif kind == "foreign":
        torch.save({"state_dict": {"nothing": torch.zeros(1)}}, checkpoint)
    expected = {"missing": r"--checkpoint=.*x.ckpt: no such checkpoint file$", "folder": r"no such checkpoint file \(a folder: pass a .ckpt file in it\)",
                "foreign": r"x.ckpt: its weights do not fit the model of"}[kind]
    with pytest.raises(UserError, match=expected):
        trained_model(cfg, tmp_path, checkpoint)


def run_dir_of(tmp_path: Path, model: str) -> Path:
    run = tmp_path / model
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"runtime": {"choices": {"model": model, "data": "twemoji"}}}}))
    (run / "metrics.json").write_text('{"test": {"test/acc": 0.5}}')
    return run


def test_twemoji_blocks_refuses_a_dual_encoder_run_and_a_release_onto_a_file(tmp_path, monkeypatch, capsys):
    from memegap.studies.classifiers import twemoji_blocks

    with pytest.raises(UserError, match=r"twemoji_blocks table needs a run of model=cifar_cnn or model=resnet_classifier; .* model=dual_encoder"):
        twemoji_blocks.table([run_dir_of(tmp_path, "cifar_cnn"), run_dir_of(tmp_path, "dual_encoder")])
    a_file = tmp_path / "release.txt"
    a_file.write_text("mine")
    monkeypatch.setattr(sys, "argv", ["twemoji_blocks", "release", str(a_file)])
    with pytest.raises(SystemExit) as exit_info:
        twemoji_blocks.main()
    assert exit_info.value.code == 2 and "a file, not a folder" in capsys.readouterr().err and a_file.read_text() == "mine"


def test_cone_refuses_to_replace_an_earlier_report(tmp_path):
    from memegap.studies.modality_gap.cone import measure

    (tmp_path / "cone.json").write_text("{}")
    args = argparse.Namespace(overrides=["experiment=twemoji_gap"], out=tmp_path, split="test", random_inits=1, overwrite=False)
    with pytest.raises(UserError, match=r"cone.json exists \(an earlier cone report\): pass --overwrite"):
        measure(args)
    assert (tmp_path / "cone.json").read_text() == "{}"


@pytest.mark.parametrize(("override", "expected"), [
    ("data.batchsize=8", "memegap-train: error: Could not override 'data.batchsize'; Key 'batchsize' not in 'twemoji_schema'; did you mean data.batch_size"),
    ("model/loss=nonexistent", "memegap-train: error: In 'model/dual_encoder': Could not find 'model/loss/nonexistent'; options of 'model/loss': ce; "),
])
def test_a_command_line_hydra_cannot_compose_is_one_line(monkeypatch, capsys, override, expected):
    """Hydra printed a 6-line block (with advice to add the misspelt key with `+`) and exited 1."""
    from hydra.core.global_hydra import GlobalHydra

    from memegap.train import main

    monkeypatch.setattr(sys, "argv", ["memegap-train", "experiment=twemoji_gap", override])
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)
    try:
        with pytest.raises(SystemExit) as exit_info:
            main()
    finally:
        GlobalHydra.instance().clear()
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.strip().splitlines()[-1].startswith(expected), err
    assert "HYDRA_FULL_ERROR" not in err and "Traceback" not in err and "+data" not in err
