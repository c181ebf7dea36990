"""memegap-eval: test a trained checkpoint on the test split of the composed data module.

    memegap-eval experiment=twemoji_gap ckpt_path=logs/twemoji_gap/runs/<run>/checkpoints/last.ckpt
    memegap-eval experiment=coco_clip model.name_or_path=<run>/clip_merged             # CLIP: no checkpoint needed
    memegap-eval experiment=coco_clip model.adapter_path=<run>/clip_adapters           # (or the base + adapters;
    memegap-eval experiment=coco_clip                                                  #  or CLIP zero-shot)

Prints Lightning's table of test metrics and writes a run dir of its own, logs/eval/runs/<run_id>/,
with metrics.json ({"test": ...}), the geometry PNGs, the log and the config. The checkpoint is read
and its recorded data/model config compared with this one before any work.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import hydra
from omegaconf import DictConfig

from memegap.config import CONFIG_DIR, check_accelerator, register_configs, validate_config
from memegap.errors import UserError, reported_as_one_line
from memegap.utils.cli import one_line_config_errors
from memegap.utils.run import prepare_run, resolve_ckpt_path, run_attempt, scalar_metrics, show_metrics
from memegap.utils.run_dir import EVAL_MAY_CHANGE, StartRecord, check_checkpoint_config, claim_run_dir, load_checkpoint, run_dir_released, save_metrics

log = logging.getLogger(__name__)
register_configs()


# Models whose weights load from model.name_or_path (and adapter_path) without a Lightning checkpoint.
LOADS_ITS_OWN_WEIGHTS = ("memegap.models.clip.ClipDualEncoder",)


def evaluate(cfg: DictConfig) -> dict[str, float]:
    run_dir = Path(cfg.paths.output_dir)
    with StartRecord(run_dir):  # a refused evaluation leaves no run dir behind
        if not cfg.get("ckpt_path") and cfg.model.get("_target_") not in LOADS_ITS_OWN_WEIGHTS:
            raise UserError("memegap-eval needs ckpt_path=<path to a .ckpt file>")
        validate_config(cfg)
        check_accelerator(cfg)
        claim_run_dir(run_dir, None, "memegap-eval")
        ckpt_path = resolve_ckpt_path(cfg.ckpt_path, run_dir) if cfg.get("ckpt_path") else None
        if ckpt_path:
            check_checkpoint_config(load_checkpoint(ckpt_path), ckpt_path, cfg, EVAL_MAY_CHANGE)
        datamodule, model, trainer = prepare_run(cfg, run_dir)
    with run_attempt(run_dir), warnings.catch_warnings(), run_dir_released(run_dir):
        # the checkpoint's training callbacks (checkpointing, RNG state) are left out on purpose
        warnings.filterwarnings("ignore", message=r"Be aware that when using `ckpt_path`, callbacks used to create")
        try:
            metrics = scalar_metrics(trainer.test(model, datamodule=datamodule, ckpt_path=ckpt_path, verbose=False)[0])
        except RuntimeError as error:  # allow_config_change=true with other sizes: the weights cannot load
            if "loading state_dict" not in str(error):
                raise
            raise UserError(f"ckpt_path={ckpt_path}: its weights do not fit this config's model ({str(error).splitlines()[1].strip()[:160]} ...): "
                            "evaluate it with the sizes it was trained with") from None
        show_metrics(metrics, "test metrics")
        log.info("metrics saved to %s", save_metrics(run_dir, {"test": metrics}))
    return metrics


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="eval.yaml")
def hydra_main(cfg: DictConfig) -> None:
    with reported_as_one_line("memegap-eval", verbose=bool(cfg.get("verbose")), verbose_hint="verbose=true"):
        evaluate(cfg)


main = one_line_config_errors("memegap-eval", hydra_main)  # the console script

if __name__ == "__main__":
    main()
