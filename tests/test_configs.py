"""The Hydra config tree: every group composes, every experiment runs fast_dev_run on a mini config,
and a wrong key or type fails at start-up naming the key."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException

from memegap.config import CONFIG_DIR, ConfigError
from memegap.train import train
from tests.conftest import compose_config

EXPERIMENTS = sorted(p.stem for p in (Path(CONFIG_DIR) / "experiment").glob("*.yaml"))


def group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (Path(CONFIG_DIR) / group).glob("*.yaml"))


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_runs_fast_dev_run(experiment, compose_train):
    cfg = compose_train(f"experiment={experiment}", "+trainer.fast_dev_run=true", "logger=none", "test_before_fit=false")
    metrics = train(cfg)
    assert metrics["test"]["test/loss"] > 0


@pytest.mark.parametrize(
    "group",
    ["trainer", "logger", "callbacks", "debug", "launcher", "hparams_search"],
)
def test_every_option_of_a_group_composes(group, tmp_path):
    for option in group_options(group):
        cfg = compose_config("train.yaml", ["experiment=twemoji_gap", f"{group}={option}"], tmp_path)
        assert cfg.data.batch_size > 0


def test_eval_config_composes(tmp_path):
    cfg = compose_config("eval.yaml", ["ckpt_path=/some/model.ckpt"], tmp_path)
    assert cfg.ckpt_path == "/some/model.ckpt" and cfg.task_name == "eval"


def test_wandb_is_offline_unless_asked(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    cfg = compose_config("train.yaml", ["logger=wandb"], tmp_path)
    assert cfg.logger.wandb.mode == "offline"
    monkeypatch.setenv("WANDB_MODE", "online")
    assert compose_config("train.yaml", ["logger=wandb"], tmp_path).logger.wandb.mode == "online"


@pytest.mark.parametrize(
    "override, key",
    [
        ("data.batchsize=8", "batchsize"),
        ("data.batch_size=eight", "data.batch_size"),
        ("model.dora_rnk=4", "dora_rnk"),
        ("model.optimizer.learning_rate=0.1", "learning_rate"),
        ("model.embed_dim=wide", "model.embed_dim"),
    ],
)
def test_wrong_key_or_type_fails_at_compose_naming_the_key(override, key, tmp_path):
    with pytest.raises(ConfigCompositionException) as error:
        compose_config("train.yaml", ["experiment=twemoji_gap", override], tmp_path)
    message = str(error.value) + str(error.value.__cause__)
    assert key in message


def test_a_key_added_with_plus_fails_before_anything_loads(compose_train):
    cfg = compose_train("+data.batchsize=8", "+model.image_tower.pretrainde=false")
    with pytest.raises(ConfigError, match="batchsize"):
        train(cfg)
    cfg = compose_train("+model.image_tower.pretrainde=false")
    with pytest.raises(ConfigError, match="pretrainde"):
        train(cfg)


def test_wrong_key_in_a_users_experiment_file_fails_naming_it(tmp_path):
    user_configs = tmp_path / "my_configs"
    (user_configs / "experiment").mkdir(parents=True)
    (user_configs / "experiment" / "typo.yaml").write_text(
        "# @package _global_\ndefaults:\n  - twemoji_gap\ndata:\n  imagesize: 32\n"
    )
    with pytest.raises(ConfigCompositionException) as error:
        compose_config("train.yaml", [f"hydra.searchpath=[file://{user_configs}]", "experiment=typo"], tmp_path)
    assert "imagesize" in str(error.value) + str(error.value.__cause__)


def test_cli_fails_at_start_up_naming_the_key(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "memegap.train", "experiment=twemoji_gap", "data.batchsize=8", f"hydra.run.dir={tmp_path}"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "WANDB_MODE": "offline"},
    )
    assert result.returncode != 0
    assert "batchsize" in result.stderr and "TwemojiDataConfig" in result.stderr
    assert not (tmp_path / "checkpoints").exists()
