"""What the train/eval entry points do around Lightning: instantiate groups, print and save the
config, log hyper-parameters, keep one W&B run id per run dir, find checkpoints, save metrics."""

from __future__ import annotations

import io
import json
import logging
import secrets
import string
from pathlib import Path
from typing import Any

import lightning as L
import rich.syntax
import rich.tree
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from rich.console import Console

from memegap.config import validate_config
from memegap.utils.io import write_text_atomic

log = logging.getLogger(__name__)

TREE_ORDER = ("data", "model", "callbacks", "logger", "trainer", "paths", "extras")
WANDB_ID_FILE = "wandb_run_id.txt"


def prepare_run(cfg: DictConfig) -> tuple[Path, L.LightningDataModule, L.LightningModule, L.Trainer]:
    """What every entry point does first: validate the config, show and save it, seed, pin the W&B run
    id, then build the data module, model and trainer. Returns them with the run dir."""
    validate_config(cfg)
    output_dir = Path(cfg.paths.output_dir)
    if cfg.get("extras", {}).get("print_config"):
        print_config_tree(cfg, output_dir)
    L.seed_everything(cfg.seed, workers=True)
    pin_wandb_run_id(cfg, output_dir)
    datamodule = instantiate(cfg.data, _convert_="all")
    model = instantiate(cfg.model, _convert_="all")
    trainer = instantiate(cfg.trainer, callbacks=instantiate_group(cfg.get("callbacks")), logger=instantiate_group(cfg.get("logger")))
    return output_dir, datamodule, model, trainer


def instantiate_group(group: DictConfig | None) -> list[Any]:
    """Instantiate every entry of a dict-of-configs group (callbacks, logger) that has a `_target_`."""
    if not group:
        return []
    return [instantiate(entry) for entry in group.values() if isinstance(entry, DictConfig) and "_target_" in entry]


def print_config_tree(cfg: DictConfig, save_dir: Path) -> None:
    """Show the composed config as a Rich tree and save it as <save_dir>/config_tree.log."""
    tree = rich.tree.Tree("CONFIG", style="dim", guide_style="dim")
    fields = [name for name in TREE_ORDER if name in cfg] + [name for name in cfg if name not in TREE_ORDER]
    for name in fields:
        branch = tree.add(name, style="bold", guide_style="dim")
        content = OmegaConf.to_yaml(cfg[name], resolve=True) if isinstance(cfg[name], DictConfig) else str(cfg[name])
        branch.add(rich.syntax.Syntax(content, "yaml"))
    Console().print(tree)
    recorder = Console(record=True, width=120, file=io.StringIO())
    recorder.print(tree)
    write_text_atomic(save_dir / "config_tree.log", recorder.export_text())


def log_hyperparameters(cfg: DictConfig, model: L.LightningModule, trainer: L.Trainer) -> None:
    """Send the composed config and parameter counts (total/trainable/frozen) to every logger."""
    if not trainer.loggers:
        return
    hparams = {
        key: OmegaConf.to_container(cfg[key], resolve=True) if OmegaConf.is_config(cfg[key]) else cfg[key]
        for key in cfg
        if key != "hydra"
    }
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    hparams["model/params/total"] = total
    hparams["model/params/trainable"] = trainable
    hparams["model/params/non_trainable"] = total - trainable
    for logger in trainer.loggers:
        logger.log_hyperparams(hparams)


def pin_wandb_run_id(cfg: DictConfig, output_dir: Path) -> None:
    """Give the W&B logger a run id stored in the run dir, so a resumed run continues the same W&B run
    (and every job of a multirun, having its own dir, gets its own run)."""
    wandb_cfg = (cfg.get("logger") or {}).get("wandb")
    if not wandb_cfg or wandb_cfg.get("id"):
        return
    id_file = output_dir / WANDB_ID_FILE
    if id_file.exists():
        run_id = id_file.read_text().strip()
    else:
        run_id = "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))
        write_text_atomic(id_file, run_id + "\n")
    with open_dict(cfg):
        cfg.logger.wandb.id = run_id


def resolve_ckpt_path(ckpt_path: str | None, output_dir: Path) -> str | None:
    """`last` -> <run dir>/checkpoints/last.ckpt; a path must exist. Fails with what to do otherwise."""
    if ckpt_path is None:
        return None
    if ckpt_path == "last":
        last = output_dir / "checkpoints" / "last.ckpt"
        if not last.exists():
            raise FileNotFoundError(
                f"ckpt_path=last: no {last}. To resume, run in the interrupted run's dir: pass the same "
                f"`run_id=` (the run dir's name) and experiment as the first run"
            )
        return str(last)
    if not Path(ckpt_path).exists():
        raise FileNotFoundError(f"ckpt_path={ckpt_path}: no such checkpoint file")
    return ckpt_path


def finish_wandb() -> None:
    """Close the W&B run if one is open (each job of a multirun must get its own run)."""
    import sys

    if "wandb" in sys.modules:
        import wandb

        if wandb.run is not None:
            wandb.finish()


def scalar_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    return {name: float(value) for name, value in metrics.items()}


def save_metrics(output_dir: Path, metrics: dict[str, dict[str, float]]) -> Path:
    path = output_dir / "metrics.json"
    write_text_atomic(path, json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    return path


def metric_value(metrics: dict[str, float], name: str | None) -> float | None:
    """The value Hydra sweepers optimise; fails naming the metric and the ones that exist."""
    if not name:
        return None
    if name not in metrics:
        raise KeyError(f"optimized_metric={name!r} was not logged; logged metrics: {sorted(metrics)}")
    return metrics[name]
