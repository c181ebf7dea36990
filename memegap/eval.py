"""memegap-eval: test a trained checkpoint on the test split of the composed data module.

    memegap-eval experiment=twemoji_gap ckpt_path=logs/train/runs/<run>/checkpoints/last.ckpt
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig

from memegap.config import CONFIG_DIR, register_configs
from memegap.utils.run import finish_wandb, prepare_run, save_metrics, scalar_metrics

log = logging.getLogger(__name__)
register_configs()


def evaluate(cfg: DictConfig) -> dict[str, float]:
    if not cfg.get("ckpt_path"):
        raise ValueError("memegap-eval needs ckpt_path=<path to a .ckpt file>")
    if not Path(cfg.ckpt_path).is_file():
        raise FileNotFoundError(f"ckpt_path={cfg.ckpt_path}: no such checkpoint file")
    output_dir, datamodule, model, trainer = prepare_run(cfg)
    try:
        metrics = scalar_metrics(trainer.test(model, datamodule=datamodule, ckpt_path=cfg.ckpt_path)[0])
        save_metrics(output_dir, {"test": metrics})
    finally:
        finish_wandb()
    return metrics


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="eval.yaml")
def main(cfg: DictConfig) -> None:
    evaluate(cfg)


if __name__ == "__main__":
    main()
