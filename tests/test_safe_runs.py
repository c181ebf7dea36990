"""A run never damages a user's data or hides a failure: one run per run dir, finished runs left as
they are, resumes and evaluations that match the checkpoint's config, failures recorded as failures."""

from __future__ import annotations

import json
import time
from pathlib import Path

import lightning as L
import pytest
import torch

from memegap.config import ConfigError
from memegap.errors import UserError
from memegap.eval import evaluate
from memegap.train import train
from memegap.utils.run_dir import read_state, save_metrics, write_state
from memegap.utils.wandb_offline import find_run_files, read_exit_codes
from tests.conftest import MINI_OVERRIDES, compose_config


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` with its bytes."""
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def exit_codes_once_written(run_file: Path, count: int, timeout: float = 20.0) -> list[int]:
    """wandb.finish() can return a few ms before wandb-core has written the exit record: re-read."""
    deadline = time.monotonic() + timeout
    while len(codes := read_exit_codes(run_file)) < count and time.monotonic() < deadline:
        time.sleep(0.2)
    return codes


def test_a_finished_run_is_left_untouched_and_a_new_start_in_its_dir_is_refused(compose_train, tmp_path):
    common = ["logger=wandb", "test_before_fit=false"]
    first = train(compose_train(*common))
    (run_file,) = find_run_files(tmp_path)
    assert exit_codes_once_written(run_file, 1) == [0] and read_state(tmp_path)["status"] == "finished"
    before = snapshot(tmp_path)

    again = train(compose_train(*common, "ckpt_path=last"))  # the resume command, on a finished run
    assert again == first and "test" in again and again["fit"]
    assert snapshot(tmp_path) == before  # metrics.json, checkpoints and the W&B run as they were

    with pytest.raises(UserError) as refused:  # the same run_id without ckpt_path=last
        train(compose_train(*common))
    assert "ckpt_path=last" in str(refused.value) and "run_id=" in str(refused.value)
    assert snapshot(tmp_path) == before


def test_a_run_that_failed_at_start_up_can_be_started_again_in_its_dir(compose_train, tmp_path):
    with pytest.raises(UserError, match="data.language"):
        train(compose_train("data.language=fr", "logger=wandb", "test_before_fit=false"))
    metrics = train(compose_train("logger=wandb", "test_before_fit=false", "trainer.max_epochs=1"))  # the corrected command
    assert metrics["test"] and read_state(tmp_path)["status"] == "finished"


@pytest.mark.slow
def test_resume_and_eval_refuse_other_data_or_model_settings_naming_the_keys(compose_train, tmp_path):
    train(compose_train("logger=none", "test=false"))
    write_state(tmp_path, "running")  # what a run killed with SIGKILL leaves behind
    with pytest.raises(UserError, match=r"data\.image_size: 32 → 48.*model\.embed_dim: 256 → 128"):
        train(compose_train("logger=none", "test=false", "data.image_size=48", "model.embed_dim=128", "ckpt_path=last"))

    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    eval_overrides = ["experiment=twemoji_gap", *MINI_OVERRIDES, "logger=none", f"ckpt_path={ckpt}"]
    with pytest.raises(UserError, match=r"data\.image_size: 32 → 48"):
        evaluate(compose_config("eval.yaml", [*eval_overrides, "data.image_size=48"], tmp_path / "eval_48"))
    assert not (tmp_path / "eval_48").exists() or not any((tmp_path / "eval_48").iterdir())
    # harmless keys may change; the same settings resume
    evaluate(compose_config("eval.yaml", [*eval_overrides, "data.eval_batch_size=5", "data.batch_size=3"], tmp_path / "eval_ok"))
    train(compose_train("logger=none", "test=false", "trainer.max_epochs=2", "ckpt_path=last"))
    assert torch.load(ckpt, weights_only=True)["epoch"] == 1 and read_state(tmp_path)["status"] == "finished"


def test_a_corrupt_checkpoint_is_named_before_any_work(compose_train, tmp_path):
    broken = tmp_path / "broken.ckpt"
    broken.write_bytes(b"PK\x03\x04 not really a checkpoint")
    run_dir, data_dir = tmp_path / "run", tmp_path / "data"
    with pytest.raises(UserError, match=f"ckpt_path={broken}: not a readable checkpoint"):
        train(compose_train("logger=wandb", "test_before_fit=true", f"ckpt_path={broken}", f"paths.data_dir={data_dir}", output_dir=run_dir))
    assert not run_dir.exists() or list(run_dir.iterdir()) == []  # no before-fit test, no W&B run
    assert not data_dir.exists()  # no image store was built: nothing ran before the check


class InterruptAtFirstStep(L.Callback):
    """Presses Ctrl-C during the first training step."""

    def on_train_batch_end(self, *args, **kwargs) -> None:
        raise KeyboardInterrupt


def test_an_interrupted_run_is_recorded_as_failed_in_wandb_and_its_state(compose_train, tmp_path):
    cfg = compose_train("logger=wandb", "test_before_fit=false", "+callbacks.interrupt._target_=tests.test_safe_runs.InterruptAtFirstStep")
    with pytest.raises(KeyboardInterrupt):  # not Lightning's SystemExit(1), which read as "SystemExit: 1"
        train(cfg)
    (run_file,) = find_run_files(tmp_path)
    assert exit_codes_once_written(run_file, 1) == [130]
    state = read_state(tmp_path)
    assert state["status"] == "failed" and state["exit_code"] == 130 and state["error"] == "KeyboardInterrupt: interrupted (Ctrl-C)"


def test_ctrl_c_anywhere_is_one_line_and_exit_status_130(capsys):
    """At start-up (before any run dir) as during training: one line, never a traceback."""
    from memegap.errors import reported_as_one_line

    with pytest.raises(SystemExit) as stopped:
        with reported_as_one_line("memegap-train"):
            raise KeyboardInterrupt
    assert stopped.value.code == 130 and capsys.readouterr().err == "memegap-train: interrupted (Ctrl-C)\n"


def test_metrics_json_is_merged_never_shrunk(tmp_path):
    save_metrics(tmp_path, {"before_fit": {"test/loss": 3.0}, "fit": {"val/loss": 2.0}, "test": {"test/loss": 1.5}})
    save_metrics(tmp_path, {"fit": {}, "test": {"test/loss": 1.4}})
    assert json.loads((tmp_path / "metrics.json").read_text()) == {
        "before_fit": {"test/loss": 3.0}, "fit": {"val/loss": 2.0}, "test": {"test/loss": 1.4}
    }


def test_a_split_smaller_than_the_retrieval_pool_trains_and_keeps_its_checkpoint(compose_train, tmp_path):
    # 24 validation pairs, pools of 90: the monitored _pool90 metric must exist, measured in one pool of 24.
    cfg = compose_train("logger=none", "callbacks.cross_modal_retrieval.pool_size=90", "trainer.max_epochs=2", "test_before_fit=false")
    with pytest.warns(UserWarning, match=r"val has 24 images, fewer than callbacks\.cross_modal_retrieval\.pool_size=90"):
        metrics = train(cfg)
    assert "val/retrieval/image_to_text_R@1_pool90" in metrics["fit"] and metrics["fit"]["val/retrieval/pool_size"] == 24
    assert metrics["test"]["test/retrieval/image_to_text_R@1_pool90"] == metrics["test"]["test/retrieval/image_to_text_R@1"]
    assert (tmp_path / "checkpoints" / "last.ckpt").exists() and len(list((tmp_path / "checkpoints").glob("epoch_*.ckpt"))) == 1


@pytest.mark.parametrize(
    "override, message",
    [
        ("trainer.max_epochs=abc", r"trainer\.max_epochs='abc': lightning\.pytorch\.trainer\.Trainer expects"),
        ("trainer.deterministic=maybe", r"trainer\.deterministic=.maybe."),
        ("+trainer.max_epoch=3", r"trainer\.max_epoch: not an argument of lightning\.pytorch\.trainer\.Trainer"),
        ("callbacks.cross_modal_retrieval.pool_size=many", r"callbacks\.cross_modal_retrieval\.pool_size='many'"),
        ("+callbacks.embedding_geometry.binz=10", r"callbacks\.embedding_geometry\.binz: not an argument"),
        ("+logger.wandb.offline=maybe", r"logger\.wandb\.offline='maybe'"),
        ("seed=abc", r"seed='abc': expected int"),
    ],
)
def test_a_wrong_key_or_type_anywhere_fails_before_anything_loads(compose_train, tmp_path, override, message):
    with pytest.raises(ConfigError, match=message):
        train(compose_train(override, "logger=wandb"))
    assert list(tmp_path.iterdir()) == []


def test_a_checkpoint_of_another_experiment_is_refused_in_a_short_line(tmp_path):
    """It named every differing key: one 3,212-character line. Now the first few and the count."""
    from memegap.utils.run_dir import CONFIG_KEY, SHOWN_DIFFERENCES, check_checkpoint_config, model_and_data_config

    memes = compose_config("train.yaml", ["experiment=memes_triplet"], tmp_path)
    twemoji = compose_config("train.yaml", ["experiment=twemoji_gap"], tmp_path)
    with pytest.raises(UserError) as refused:
        check_checkpoint_config({CONFIG_KEY: model_and_data_config(memes)}, "memes.ckpt", twemoji)
    message = str(refused.value)
    differing = int(message.split("(")[1].split(" keys differ")[0])
    assert differing > SHOWN_DIFFERENCES and f"and {differing - SHOWN_DIFFERENCES} more" in message and len(message) < 600, message
