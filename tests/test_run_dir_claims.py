"""A run dir says what ran, and holds one run: the claim (an flock taken at Hydra's first call into our
code), the config a refused or failed start leaves, a state that says what the exit said, and a run
killed from outside recorded as such (issue 34, parts 1-3)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from memegap.config import ConfigError, validate_config
from memegap.utils.run_dir import config_subdir, run_name
from memegap.errors import UserError
from memegap.train import train
from memegap.utils.run_dir import KILLED, STATE_FILE, claim_run_dir, read_state, release_run_dir, save_metrics
from tests.conftest import compose_config

HOLD_THE_LOCK = """
import sys, time
from pathlib import Path
from memegap.utils.run_dir import lock_run_dir, write_state
run_dir = Path(sys.argv[1])
assert lock_run_dir(run_dir)
if len(sys.argv) > 2:
    write_state(run_dir, "running")
print("locked", flush=True)
time.sleep(120)
"""


def holder(run_dir: Path, *extra: str) -> subprocess.Popen:
    """Another process that claims run_dir (and writes a running state) and waits, until killed."""
    process = subprocess.Popen([sys.executable, "-c", HOLD_THE_LOCK, str(run_dir), *extra], stdout=subprocess.PIPE, text=True,
                               env={key: value for key, value in os.environ.items() if key not in ("LOCAL_RANK", "RANK")})
    assert process.stdout.readline().strip() == "locked"
    return process


def test_a_refused_or_failed_start_leaves_no_config_a_later_start_keeps(tmp_path):
    run_dir = tmp_path / "cfgmix"
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "config.yaml").write_text("data:\n  language: es\n")  # a start that failed before any checkpoint
    (run_dir / ".hydra" / "attempt-2026-01-01_00-00-00").mkdir()
    os.utime(run_dir / ".hydra" / "attempt-2026-01-01_00-00-00", (0, 0))
    assert config_subdir(str(run_dir)) == ".hydra"  # the new start's config replaces it: it is the run that trains
    assert claim_run_dir(run_dir, None) is None
    assert not list((run_dir / ".hydra").glob("attempt-*"))  # earlier starts' attempt configs are gone
    save_metrics(run_dir, {"fit": {"loss": 1.0}})  # now it holds a run: a resume keeps the first config
    assert config_subdir(str(run_dir)).startswith(".hydra/attempt-")
    release_run_dir(run_dir)


def test_a_second_start_while_a_run_holds_the_dir_is_refused(tmp_path):
    run_dir = tmp_path / "twin"
    other = holder(run_dir)
    try:
        assert config_subdir(str(run_dir)) == f".hydra/refused-{os.getpid()}"  # Hydra writes nothing of the run's own
        with pytest.raises(UserError, match=r"another command is running in the run dir .*twin right now"):
            claim_run_dir(run_dir, None)
    finally:
        other.kill()
        other.wait()
    assert claim_run_dir(run_dir, None) is None  # the kernel released the claim of the killed process
    release_run_dir(run_dir)


def test_a_run_killed_from_outside_is_recorded_as_such_when_its_state_is_next_read(tmp_path):
    run_dir = tmp_path / "oom"
    other = holder(run_dir, "write-running")
    assert read_state(run_dir)["status"] == "running"  # alive: really running
    other.send_signal(signal.SIGKILL)
    other.wait()
    state = read_state(run_dir)
    assert state["status"] == "failed" and state["error"] == KILLED
    assert json.loads((run_dir / STATE_FILE).read_text())["status"] == "failed"  # written back


@pytest.mark.parametrize(("override", "message"), [
    ("trainer.max_epochs=-2", r"^trainer.max_epochs=-2: must be ≥ -1$"),
    ("trainer.max_epochs=0", r"^trainer.max_epochs=0: a fit of zero epochs trains nothing"),
    ("+trainer.max_steps=0", r"^trainer.max_steps=0: a fit of zero steps trains nothing"),
    ("data.num_workers=1000", r"^data.num_workers=1000: at most \d+ on this machine \(2 × the \d+ CPU cores"),
])
def test_counts_a_typo_can_exhaust_or_empty_are_refused_naming_the_bound(tmp_path, override, message):
    cfg = compose_config("train.yaml", ["experiment=twemoji_gap", override], tmp_path)
    with pytest.raises(ConfigError, match=message):
        validate_config(cfg)


def test_a_run_id_is_a_name_not_a_path(capsys):
    assert run_name("2026-12-06_10-00-00") == "2026-12-06_10-00-00"
    for bad in ("../../../../x", "a/b", "..", ""):
        with pytest.raises(SystemExit) as exit_info:
            run_name(bad)
        assert exit_info.value.code == 2
    assert "a run_id is a name, not a path" in capsys.readouterr().err


@pytest.mark.slow  # a training run: make test stays under 5 minutes (tests/README.md)
def test_the_state_says_what_the_exit_says_when_the_optimized_metric_is_missing(compose_train, tmp_path):
    cfg = compose_train("optimized_metric=val/no_such_metric", "test_before_fit=false")
    with pytest.raises(UserError, match=r"optimized_metric='val/no_such_metric' was not logged \(\d+ metrics were; the nearest: ") as error:
        train(cfg)
    assert len(str(error.value)) < 400
    state = read_state(tmp_path)
    assert state["status"] == "failed" and state["exit_code"] == 2


def run_cli(args: list[str], cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "WANDB_MODE": "offline", "MEMEGAP_ROOT": str(cwd)}
    return subprocess.Popen([sys.executable, "-m", "memegap.train", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=cwd)


MINI = ["experiment=twemoji_gap", "data.max_per_split=16", "data.image_size=32", "data.batch_size=8", "trainer.max_epochs=1",
        "callbacks.cross_modal_retrieval.pool_size=8", "test_before_fit=false", "logger=none"]


@pytest.mark.slow
def test_through_the_command_the_run_dir_config_is_the_trained_runs_and_twins_are_refused(tmp_path):
    refused = run_cli([*MINI, "run_id=cfgmix", "data.language=es", "trainer.max_epochs=-2"], tmp_path)
    assert refused.wait(timeout=300) == 2 and "trainer.max_epochs=-2: must be ≥ -1" in refused.stderr.read()
    run_dir = tmp_path / "logs" / "twemoji_gap" / "runs" / "cfgmix"
    assert not run_dir.exists()
    run_dir.joinpath(".hydra").mkdir(parents=True)  # what a start that failed after Hydra made the dir leaves
    run_dir.joinpath(".hydra", "config.yaml").write_text("data:\n  language: es\n")
    first, second = run_cli([*MINI, "run_id=cfgmix"], tmp_path), None
    time.sleep(0.3)
    second = run_cli([*MINI, "run_id=cfgmix"], tmp_path)
    assert second.wait(timeout=300) == 2 and "another command is running in the run dir" in second.stderr.read()
    assert first.wait(timeout=600) == 0, first.stderr.read()[-3000:]
    assert yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())["data"]["language"] == "en"
    assert sorted(path.name for path in (run_dir / "checkpoints").iterdir()) == ["epoch_000.ckpt", "last.ckpt"]
    assert not list((run_dir / ".hydra").glob("refused-*")) and read_state(run_dir)["attempts"] == 1
