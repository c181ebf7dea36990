"""memegap-train: compose the Hydra config, train, test the best checkpoint, return optimized_metric.

    memegap-train experiment=twemoji_gap                 # the default experiment
    memegap-train -m experiment=twemoji_gap data.language=en,es
    memegap-train experiment=twemoji_gap run_id=<run dir name> ckpt_path=last   # resume (same overrides)
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from lightning.fabric.utilities.exceptions import MisconfigurationException
from omegaconf import DictConfig

from memegap.callbacks.collect import testing_before_fit
from memegap.callbacks.config_record import ConfigInCheckpoint
from memegap.config import CONFIG_DIR, check_accelerator, register_configs, validate_config
from memegap.errors import UserError, reported_as_one_line
from memegap.utils.cli import one_line_config_errors
from memegap.utils.run import log_hyperparameters, metric_value, prepare_run, resolve_ckpt_path, run_attempt, scalar_metrics, show_metrics
from memegap.utils.run_dir import (
    StartRecord, check_checkpoint_config, claim_run_dir, load_checkpoint, model_and_data_config, read_metrics, run_dir_released, save_metrics,
)

log = logging.getLogger(__name__)
register_configs()


def train(cfg: DictConfig) -> dict[str, dict[str, float]]:
    """Run one experiment; returns {"before_fit": ..., "fit": ..., "test": ...} metric dicts.

    Everything that can be checked is checked before any work: the config, the run dir (a new run
    never writes into an earlier one), the checkpoint to resume from and its config."""
    run_dir = Path(cfg.paths.output_dir)
    with StartRecord(run_dir) as start:  # a refused start leaves nothing behind
        validate_config(cfg)
        check_accelerator(cfg)
        earlier = claim_run_dir(run_dir, cfg.get("ckpt_path"))
        if earlier and earlier["status"] == "finished":
            if cfg.ckpt_path != "last":
                raise UserError(f"the run in {run_dir} has finished; to train from ckpt_path={cfg.ckpt_path}, pass a new run_id=")
            start.undo()  # nothing to do, and nothing written: no attempt config, no log lines
            log.info("the run in %s has already finished; nothing to do (its metrics are in %s/metrics.json)", run_dir, run_dir)
            return read_metrics(run_dir)
        ckpt_path = resolve_ckpt_path(cfg.get("ckpt_path"), run_dir)
        if ckpt_path:
            check_checkpoint_config(load_checkpoint(ckpt_path), ckpt_path, cfg)
        datamodule, model, trainer = prepare_run(cfg, run_dir, [ConfigInCheckpoint(model_and_data_config(cfg))])
    with run_dir_released(run_dir):
        return train_in(run_dir, cfg, datamodule, model, trainer, ckpt_path)


def train_in(run_dir: Path, cfg: DictConfig, datamodule, model, trainer, ckpt_path: str | None) -> dict[str, dict[str, float]]:
    """The attempt itself, in a claimed run dir: (test,) fit, test; the optimized metric is checked
    before the attempt is recorded as finished (the state file says what the command's exit says)."""
    metrics: dict[str, dict[str, float]] = {}
    with run_attempt(run_dir):
        log_hyperparameters(cfg, model, trainer)
        if cfg.get("test_before_fit") and not ckpt_path:
            with testing_before_fit(trainer):
                metrics["before_fit"] = scalar_metrics(trainer.test(model, datamodule=datamodule, verbose=False)[0])
            save_metrics(run_dir, metrics)
        if cfg.get("train"):
            try:
                trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
            except MisconfigurationException as error:  # the best checkpoint's monitor: optimized_metric
                if "could not find the monitored key" not in str(error):
                    raise
                metric_value(scalar_metrics(trainer.callback_metrics), cfg.get("optimized_metric"))  # names it in one line
                raise
            metrics["fit"] = scalar_metrics(trainer.callback_metrics)
            save_metrics(run_dir, metrics)
        if cfg.get("test"):
            best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
            if not best and trainer.checkpoint_callback is None:  # debug modes save none on purpose
                log.info("testing the current weights (this run saves no checkpoints)")
            elif not best and not cfg.get("train"):  # a test-only run: nothing was meant to be saved
                log.info("testing the untrained model (train=false; memegap-eval tests a checkpoint)")
            elif not best:
                log.warning("no best checkpoint was saved; testing the current weights")
            metrics["test"] = scalar_metrics(trainer.test(model, datamodule=datamodule, ckpt_path=best or None, verbose=False)[0])
            show_metrics(metrics["test"], "test metrics (best checkpoint)" if best else "test metrics")
        log.info("metrics saved to %s", save_metrics(run_dir, metrics))
        if cfg.get("train"):
            optimized_value(metrics, cfg)
    log.info("run dir: %s", run_dir)
    return read_metrics(run_dir)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train.yaml")
def hydra_main(cfg: DictConfig) -> float | None:
    with reported_as_one_line("memegap-train", verbose=bool(cfg.get("verbose")), verbose_hint="verbose=true"):
        metrics = train(cfg)
        if not cfg.get("train"):  # a test-only run has no validation metrics to optimise
            return None
        return optimized_value(metrics, cfg)


def optimized_value(metrics: dict[str, dict[str, float]], cfg: DictConfig) -> float | None:
    """The value of cfg.optimized_metric among the fit and test metrics (what Hydra sweepers optimise)."""
    flat = {name: value for stage in ("fit", "test") for name, value in metrics.get(stage, {}).items()}
    return metric_value(flat, cfg.get("optimized_metric"))


main = one_line_config_errors("memegap-train", hydra_main)  # the console script

if __name__ == "__main__":
    main()
