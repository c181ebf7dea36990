"""memegap-train: compose the Hydra config, train, test the best checkpoint, return optimized_metric.

    memegap-train experiment=twemoji_gap                 # the default experiment
    memegap-train -m experiment=twemoji_gap data.language=en,es
    memegap-train experiment=twemoji_gap run_id=<run dir name> ckpt_path=last   # resume
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig

from memegap.config import CONFIG_DIR, register_configs
from memegap.utils.run import (
    finish_wandb,
    log_hyperparameters,
    metric_value,
    prepare_run,
    resolve_ckpt_path,
    save_metrics,
    scalar_metrics,
)

log = logging.getLogger(__name__)
register_configs()


def train(cfg: DictConfig) -> dict[str, dict[str, float]]:
    """Run one experiment; returns {"before_fit": ..., "fit": ..., "test": ...} metric dicts."""
    ckpt_path = resolve_ckpt_path(cfg.get("ckpt_path"), Path(cfg.paths.output_dir))  # fails before anything loads
    output_dir, datamodule, model, trainer = prepare_run(cfg)
    metrics: dict[str, dict[str, float]] = {}
    try:
        log_hyperparameters(cfg, model, trainer)
        if cfg.get("test_before_fit"):
            metrics["before_fit"] = scalar_metrics(trainer.test(model, datamodule=datamodule, verbose=False)[0])
        if cfg.get("train"):
            trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
            metrics["fit"] = scalar_metrics(trainer.callback_metrics)
        if cfg.get("test"):
            best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
            if not best:
                log.warning("no best checkpoint was saved; testing the current weights")
            metrics["test"] = scalar_metrics(trainer.test(model, datamodule=datamodule, ckpt_path=best or None)[0])
        log.info("metrics saved to %s", save_metrics(output_dir, metrics))
    finally:
        finish_wandb()
    log.info("run dir: %s", output_dir)
    return metrics


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train.yaml")
def main(cfg: DictConfig) -> float | None:
    metrics = train(cfg)
    flat = {name: value for stage in ("fit", "test") for name, value in metrics.get(stage, {}).items()}
    return metric_value(flat, cfg.get("optimized_metric"))


if __name__ == "__main__":
    main()
