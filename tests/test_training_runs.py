"""Whole runs on the CPU mini config: learning, W&B offline files, resume, multirun, eval, adapter check."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from memegap.errors import UserError
from memegap.nets.adapters import AdapterWithoutGradientError
from memegap.train import train
from memegap.utils.run_dir import read_state, write_state
from memegap.utils.wandb_offline import find_run_files, read_exit_codes, read_history

GEOMETRY_SCALARS = ["val/geometry/gap", "val/geometry/alignment", "val/geometry/uniformity_image", "val/geometry/uniformity_text"]
HISTOGRAMS = ["cosine_intra_image", "cosine_intra_text", "cosine_inter_paired", "cosine_inter_cross"]


def history_once_written(run_file: Path, last_key: str, timeout: float = 20.0) -> list[dict]:
    """wandb.finish() can return a few ms before wandb-core has written the last records (seen here):
    read the run file until `last_key` is in it, for at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        rows = read_history(run_file)
        if any(last_key in row for row in rows) or time.monotonic() > deadline:
            return rows
        time.sleep(0.2)


def test_training_lowers_the_loss_on_held_out_pictograms(compose_train):
    # 48 training pairs, 3 epochs: the test loss must fall below its value before training. (With so few
    # pairs the model memorises them after about 4 epochs and the held-out loss rises again.)
    cfg = compose_train("data.max_per_split=48", "trainer.max_epochs=3", "logger=none", "test_before_fit=true")
    metrics = train(cfg)
    assert metrics["test"]["test/loss"] < metrics["before_fit"]["test/loss"] - 0.05


def test_wandb_offline_run_holds_geometry_scalars_histograms_and_pngs(compose_train, tmp_path):
    cfg = compose_train("logger=all", "trainer.max_epochs=2", "test_before_fit=false")
    metrics = train(cfg)
    (run_file,) = find_run_files(tmp_path)
    rows = history_once_written(run_file, "test/geometry/gap")
    logged = {key for row in rows for key in row}
    for name in GEOMETRY_SCALARS + ["val/retrieval/image_to_text_R@1", "test/geometry/gap"]:
        assert name in logged, name
    gaps = [row["val/geometry/gap"] for row in rows if "val/geometry/gap" in row]
    # one value an epoch; the last is the one the run returned, the test gap the test stage's
    assert len(gaps) == 2 and gaps[-1] == pytest.approx(metrics["fit"]["val/geometry/gap"], rel=1e-6)
    assert [row["test/geometry/gap"] for row in rows if "test/geometry/gap" in row] == [pytest.approx(metrics["test"]["test/geometry/gap"], rel=1e-6)]
    for name in HISTOGRAMS:
        histogram_rows = [row for row in rows if f"val/geometry/{name}/_type" in row]
        assert len(histogram_rows) == 2, name
        assert histogram_rows[0][f"val/geometry/{name}/_type"] == "histogram"
        assert len(histogram_rows[0][f"val/geometry/{name}/bins"]) == 51
    # 24 validation pairs: 276 intra pairs per modality, 24 paired, 552 cross.
    last = [row for row in rows if "val/geometry/cosine_inter_cross/values" in row][-1]
    assert sum(last["val/geometry/cosine_inter_cross/values"]) == 24 * 23
    assert any(row.get("val/geometry/cosine_histograms/_type") == "images/separated" for row in rows)
    assert sorted(p.name for p in (tmp_path / "geometry").glob("*.png")) == ["modalities.png", "test_epoch002.png", "val_epoch000.png", "val_epoch001.png", "val_evolution.png"]  # test after 2 epochs
    assert any(row.get("val/geometry/cosine_histograms_over_epochs/_type") == "images/separated" for row in rows)
    assert {"val/retrieval/text_to_image_median_rank_pool8", "val/retrieval/image_to_text_R@1_batch8", "val/retrieval/text_to_image_mean_rank"} <= logged
    csv_rows = (tmp_path / "csv" / "version_0" / "histograms.csv").read_text().splitlines()
    assert csv_rows[0] == "step,epoch,name,bin_left,bin_right,count" and len(csv_rows) == 1 + 3 * 4 * 50
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (event_dir,) = {p.parent for p in (tmp_path / "tensorboard").rglob("events.out.tfevents.*")}
    events = EventAccumulator(str(event_dir), size_guidance={"histograms": 0}).Reload()
    assert {f"val/geometry/{name}" for name in HISTOGRAMS} <= set(events.Tags()["histograms"])
    (first, _) = events.Histograms("val/geometry/cosine_inter_cross")
    assert first.histogram_value.num == 24 * 23


def final_validation(output_dir: Path) -> dict[str, float]:
    return json.loads((output_dir / "metrics.json").read_text())["fit"]


def test_resumed_run_ends_with_the_same_metrics(compose_train, tmp_path):
    common = ["trainer.max_epochs=2", "logger=wandb", "test=false", "model.text_tower.max_length=16"]
    uninterrupted = tmp_path / "uninterrupted"
    train(compose_train(*common, output_dir=uninterrupted))

    interrupted = tmp_path / "interrupted"
    train(compose_train(*common[1:], "trainer.max_epochs=1", output_dir=interrupted))
    write_state(interrupted, "running")  # what a run killed (SIGKILL) during its second epoch leaves
    first_id = (interrupted / "wandb_run_id.txt").read_text()
    train(compose_train(*common, "ckpt_path=last", output_dir=interrupted))

    expected, resumed = final_validation(uninterrupted), final_validation(interrupted)
    for name in ["val/loss", "val/geometry/gap", "val/geometry/alignment", "val/retrieval/image_to_text_R@1"]:
        assert resumed[name] == pytest.approx(expected[name], abs=1e-6), name
    assert (interrupted / "wandb_run_id.txt").read_text() == first_id
    assert len(find_run_files(interrupted)) == 2 and {p.stem for p in find_run_files(interrupted)} == {f"run-{first_id.strip()}"}
    # Checkpoints leave out the frozen pretrained tower weights (rebuilt from the packages) and keep the rest.
    model = instantiate(compose_train(*common).model)
    frozen = {name for name, parameter in model.named_parameters() if not parameter.requires_grad}
    saved = set(torch.load(interrupted / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"])
    assert saved == set(model.state_dict()) - frozen
    # frozen weights 104 MB; adapters, projections and their two AdamW moments about 13 MB
    assert (interrupted / "checkpoints" / "last.ckpt").stat().st_size < 0.2 * sum(model.state_dict()[name].nbytes for name in frozen)


def test_resume_without_a_checkpoint_says_what_to_do(compose_train, tmp_path):
    with pytest.raises(UserError, match="run_id="):
        train(compose_train("ckpt_path=last", "logger=none"))


def test_adapter_on_an_unused_layer_fails_loudly_naming_it(compose_train):
    # BERT's pooler is never called under mean pooling: its adapter can get no gradient.
    cfg = compose_train(
        "model.text_tower.with_pooler=true",
        "model.text_adapter_targets='.*\\.(query|value)|.*pooler\\.dense'",
        "logger=none",
        "trainer.max_epochs=1",
        "test_before_fit=false",
    )
    with pytest.raises(AdapterWithoutGradientError, match="pooler.dense.lora_A"):
        train(cfg)


def test_every_default_adapter_gets_a_gradient(compose_train):
    cfg = compose_train()
    model = instantiate(cfg.model)
    batch = {"image": torch.rand(4, 3, 32, 32), "text": ["A picture of a cat", "A picture of a dog", "A picture of a", "b"]}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    for _ in range(2):  # DoRA's B starts at zero, so A is reached at the second step
        optimizer.zero_grad()
        embeddings = model.embed(batch)
        model.loss(embeddings["image"], embeddings["text"], model.logit_scale)["loss"].backward()
        optimizer.step()
    from memegap.nets.adapters import adapters_without_gradient

    assert adapters_without_gradient(model) == []
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) < 0.05 * sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("locked, trained", [("image", "text"), ("text", "image")])
def test_a_locked_tower_gets_no_adapters_and_no_gradient(compose_train, locked, trained):
    model = instantiate(compose_train(f"model.lock_{locked}_tower=true").model)
    locked_tower, trained_tower = getattr(model, f"{locked}_tower"), getattr(model, f"{trained}_tower")
    assert not any("lora_" in name for name, _ in locked_tower.named_parameters())
    assert not any(parameter.requires_grad for parameter in locked_tower.parameters())
    assert any(parameter.requires_grad for name, parameter in trained_tower.named_parameters() if "lora_" in name)
    assert getattr(model, f"{locked}_projection").weight.requires_grad  # the projection still trains


def run_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "offline", "MEMEGAP_ROOT": str(cwd)}
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=600, env=env, cwd=cwd)


MINI_CLI = [
    "experiment=twemoji_gap", "data.max_per_split=16", "data.image_size=32", "data.batch_size=8",
    "trainer.max_epochs=1", "extras.print_config=false", "callbacks.cross_modal_retrieval.pool_size=8",
    "test_before_fit=false", "logger=wandb",
]


@pytest.mark.slow
def test_multirun_makes_two_run_dirs_and_two_wandb_runs(tmp_path):
    result = run_cli(["memegap.train", "-m", *MINI_CLI, "model.optimizer.lr=0.001,0.002"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "alembic" not in result.stdout + result.stderr  # Optuna's storage layer announced its seven plugins
    (sweep,) = (tmp_path / "logs" / "twemoji_gap" / "multiruns").iterdir()
    job_dirs = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit())
    assert [p.name for p in job_dirs] == ["0", "1"]
    run_files = [find_run_files(job) for job in job_dirs]
    assert all(len(files) == 1 for files in run_files)
    assert run_files[0][0].name != run_files[1][0].name
    # each job ran with its own learning rate: peak lr after warm-up, decayed by the same cosine factor
    lrs = [json.loads((job / "metrics.json").read_text())["fit"]["train/lr"] for job in job_dirs]
    assert lrs[1] == pytest.approx(2 * lrs[0], rel=1e-6)


def train_mini_run(tmp_path: Path) -> Path:
    trained = run_cli(["memegap.train", *MINI_CLI, "logger=csv", "run_id=first"], tmp_path)
    assert trained.returncode == 0, trained.stderr[-3000:]
    return tmp_path / "logs" / "twemoji_gap" / "runs" / "first"


def tree(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.mark.slow
def test_the_resume_of_a_finished_run_changes_nothing(tmp_path):
    """The README says so; it used to add a .hydra/attempt-* config and log lines."""
    run_dir = train_mini_run(tmp_path)
    before = tree(run_dir)
    again = run_cli(["memegap.train", *MINI_CLI, "logger=csv", "run_id=first", "ckpt_path=last"], tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "has already finished; nothing to do" in again.stdout + again.stderr
    assert tree(run_dir) == before


@pytest.mark.slow
def test_error_analysis_reads_a_trained_run(tmp_path):
    run_dir = train_mini_run(tmp_path)
    trained_test = json.loads((run_dir / "metrics.json").read_text())["test"]
    # the study script embeds the same checkpoint and pools (the run's pool_size=8 and pool_repeats): its
    # "correct" share is the logged R@1
    analysed = subprocess.run([sys.executable, "-m", "memegap.studies.twemoji.twemoji_errors", str(run_dir)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert analysed.returncode == 0, analysed.stderr[-3000:]
    kinds = json.loads(analysed.stdout)
    assert kinds["correct"] == pytest.approx(trained_test["test/retrieval/image_to_text_R@1_pool8"], abs=1e-6)
    assert kinds["correct"] + kinds.get("sibling", 0.0) + kinds.get("other_base", 0.0) == pytest.approx(1.0)


@pytest.mark.slow
def test_eval_entry_point_reads_a_trained_run_and_a_finished_run_is_never_touched(tmp_path):
    run_dir = train_mini_run(tmp_path)
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    evaluated = run_cli(["memegap.eval", *MINI_CLI[:3], "extras.print_config=false", "logger=none", f"ckpt_path={ckpt}", "run_id=eval"], tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    tested = json.loads((tmp_path / "logs" / "eval" / "runs" / "eval" / "metrics.json").read_text())["test"]
    trained_test = json.loads((run_dir / "metrics.json").read_text())["test"]
    assert tested["test/loss"] == pytest.approx(trained_test["test/loss"], rel=1e-5)

    # The resume command on the finished run: said, exit 0, nothing touched.
    first_config = (run_dir / ".hydra" / "config.yaml").read_text()
    metrics_before = (run_dir / "metrics.json").read_bytes()
    resumed = run_cli(["memegap.train", *MINI_CLI, "logger=csv", "run_id=first", "ckpt_path=last"], tmp_path)
    assert resumed.returncode == 0 and "already finished; nothing to do" in resumed.stderr + resumed.stdout
    assert (run_dir / "metrics.json").read_bytes() == metrics_before
    # A killed run resumed with another image size: refused in one line naming the key; the first config stays.
    write_state(run_dir, "running")
    changed = run_cli(["memegap.train", *[a for a in MINI_CLI if not a.startswith("data.image_size")], "data.image_size=48",
                       "logger=csv", "run_id=first", "ckpt_path=last"], tmp_path)
    assert changed.returncode == 2, changed.stderr[-3000:]
    error_lines = [line for line in changed.stderr.splitlines() if line.startswith("memegap-train: error:")]
    assert len(error_lines) == 1 and "data.image_size: 32 → 48" in error_lines[0] and "Traceback" not in changed.stderr
    assert (run_dir / ".hydra" / "config.yaml").read_text() == first_config
    assert list((run_dir / ".hydra").glob("attempt-*")) == []  # neither the finished resume nor the refused one left an attempt config
    assert (run_dir / "metrics.json").read_bytes() == metrics_before


@pytest.mark.slow
def test_a_crashed_run_is_a_failure_in_wandb_its_state_and_its_log(tmp_path):
    # An adapter on BERT's pooler gets no gradient: the run fails at its second step.
    crash = ["model.text_tower.with_pooler=true", "model.text_adapter_targets='.*\\.(query|value)|.*pooler\\.dense'", "run_id=crash"]
    result = run_cli(["memegap.train", *MINI_CLI, *crash], tmp_path)
    assert result.returncode == 2
    error_lines = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert len(error_lines) == 1 and error_lines[0].startswith("memegap-train: error:") and "pooler.dense" in error_lines[0]
    assert "Traceback" not in result.stderr
    run_dir = tmp_path / "logs" / "twemoji_gap" / "runs" / "crash"
    log = (run_dir / "twemoji_gap.log").read_text()
    assert "Traceback" in log and "AdapterWithoutGradientError" in log
    (run_file,) = find_run_files(run_dir)
    assert read_exit_codes(run_file) == [2]
    assert read_state(run_dir)["status"] == "failed"


@pytest.mark.slow
def test_optuna_sweep_returns_the_optimized_metric(tmp_path):
    result = run_cli(
        ["memegap.train", "-m", "hparams_search=twemoji_optuna", *MINI_CLI, "logger=none",
         "hydra.sweeper.n_trials=2", "hydra.sweeper.sampler.n_startup_trials=2"],
        tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "alembic" not in result.stdout + result.stderr  # Optuna's storage layer announced its seven plugins
    (sweep,) = (tmp_path / "logs" / "twemoji_gap" / "multiruns").iterdir()
    results = (sweep / "optimization_results.yaml").read_text()
    assert "best_params" in results and "model.optimizer.lr" in results
    best_value = float(results.split("best_value:")[1].split()[0])
    # the best of the trials' own validation R@1 (direction: maximize), as each wrote it in its metrics.json
    trials = [json.loads(path.read_text())["fit"]["val/retrieval/image_to_text_R@1_pool8"] for path in sweep.rglob("metrics.json")]
    assert len(trials) == 2 and best_value == pytest.approx(max(trials))


@pytest.mark.slow
def test_ddp_sim_gathers_the_embeddings_of_both_processes(tmp_path):
    # 2 CPU processes, 16 test pairs: each rank embeds 8, the callbacks must see all 16 (240 cross pairs).
    # Test only (train=false): ddp_spawn starts its processes once per stage, and the gather is the same in fit.
    args = [arg for arg in MINI_CLI if not arg.startswith("logger=")]
    result = run_cli(["memegap.train", *args, "trainer=ddp_sim", "logger=tensorboard", "data.batch_size=4", "data.eval_batch_size=8", "run_id=ddp", "train=false"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "sync_dist=True" not in result.stdout + result.stderr  # 116 of 239 console lines were this warning
    assert "no best checkpoint" not in result.stdout + result.stderr  # a test-only run was warned it saved none
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = tmp_path / "logs" / "twemoji_gap" / "runs" / "ddp"
    counts = []  # one TensorBoard version dir per ddp_spawn stage
    for event_dir in sorted({p.parent for p in (run_dir / "tensorboard").rglob("events.out.tfevents.*")}):
        events = EventAccumulator(str(event_dir), size_guidance={"histograms": 0}).Reload()
        if "test/geometry/cosine_inter_cross" in events.Tags()["histograms"]:
            counts += [h.histogram_value.num for h in events.Histograms("test/geometry/cosine_inter_cross")]
    assert counts == [16 * 15]


@pytest.mark.slow
def test_ddp_sim_fits_with_global_negatives_and_warns_when_gathering_is_off(tmp_path):
    """A real fit on 2 CPU processes gathers the pairs of both ranks in the loss (the default, no warning);
    with model.loss.gather=false the run says that each rank sees only its own batch."""
    args = [arg for arg in MINI_CLI if not arg.startswith("logger=")] + ["trainer=ddp_sim", "logger=tensorboard", "data.batch_size=4",
                                                                          "+trainer.limit_train_batches=2", "+trainer.limit_val_batches=1", "test=false"]
    gathered = run_cli(["memegap.train", *args, "run_id=gathered"], tmp_path)
    assert gathered.returncode == 0, gathered.stderr[-3000:]
    assert "model.loss.gather=false" not in gathered.stderr
    own_batch = run_cli(["memegap.train", *args, "model.loss.gather=false", "run_id=own"], tmp_path)
    assert own_batch.returncode == 0, own_batch.stderr[-3000:]
    assert "model.loss.gather=false on 2 DDP processes" in own_batch.stderr
