"""What the train/eval entry points do around Lightning: instantiate groups, show and save the config,
log hyper-parameters, keep one W&B run id per run dir, find checkpoints, and close an attempt with
its real outcome (run state, W&B exit code, the error in the run's log)."""

from __future__ import annotations

import io
import logging
import secrets
import string
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning as L
import rich.syntax
import rich.table
import rich.tree
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from lightning.fabric.utilities.exceptions import MisconfigurationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict
from rich.console import Console

from memegap.batch import check_callbacks, check_composition
from memegap.errors import UserError, log_to_files
from memegap.utils.io import write_text_atomic
from memegap.utils.quiet import silence_library_noise
from memegap.utils.run_dir import write_state

log = logging.getLogger(__name__)

TREE_ORDER = ("data", "model", "callbacks", "logger", "trainer", "paths", "extras")
WANDB_ID_FILE = "wandb_run_id.txt"
SHOWN_CHOICES = ("experiment", "data", "model", "trainer", "logger", "debug", "hparams_search")


def prepare_run(cfg: DictConfig, output_dir: Path, extra_callbacks: list[L.Callback] = ()) -> tuple[L.LightningDataModule, L.LightningModule, L.Trainer]:
    """What every entry point does once the run dir is claimed: show and save the config, seed, pin
    the W&B run id, then build the data module, model and trainer."""
    silence_library_noise()
    save_config_tree(cfg, output_dir, show=bool(cfg.get("extras", {}).get("print_config")))
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    pin_wandb_run_id(cfg, output_dir)
    datamodule = build(cfg.data, _convert_="all")
    if hasattr(datamodule, "check_inputs"):  # a user's own files, read cheaply before any run dir state or store build
        datamodule.check_inputs()
    model = build(cfg.model, _convert_="all")
    check_composition(datamodule.batch_keys, model.needs_batch_keys, group_choice("data", datamodule), group_choice("model", model))
    configured = instantiate_named(cfg.get("callbacks"))
    check_callbacks(datamodule, configured, group_choice("data", datamodule))
    trainer = build(cfg.trainer, callbacks=[*configured.values(), *extra_callbacks], logger=instantiate_group(cfg.get("logger")))
    return datamodule, model, trainer


def group_choice(group: str, built: Any) -> str:
    """The option of a config group this run chose (`twemoji` of data=twemoji), or the built class's name."""
    choice = HydraConfig.get().runtime.choices.get(group) if HydraConfig.initialized() else None
    return choice or type(built).__name__


def build(node: DictConfig, **kwargs: Any) -> Any:
    """hydra.utils.instantiate, except that a UserError raised by the class (a bad value it names) comes
    out as itself rather than wrapped in Hydra's InstantiationException, so it is reported in one line."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as error:
        if isinstance(error.__cause__, UserError):
            raise error.__cause__ from None
        if isinstance(error.__cause__, MisconfigurationException):  # Lightning's word for a value it cannot use (Trainer(devices=0))
            raise UserError(f"{node.get('_target_', 'config').rsplit('.', 1)[-1]}: {error.__cause__}") from None
        raise


def instantiate_named(group: DictConfig | None) -> dict[str, Any]:
    """{key: object} of every entry of a dict-of-configs group (callbacks, logger) that has a `_target_`."""
    if not group:
        return {}
    return {key: build(entry) for key, entry in group.items() if isinstance(entry, DictConfig) and "_target_" in entry}


def instantiate_group(group: DictConfig | None) -> list[Any]:
    """The objects of instantiate_named, in order."""
    return list(instantiate_named(group).values())


def save_config_tree(cfg: DictConfig, save_dir: Path, show: bool) -> None:
    """Save the composed config as a Rich tree in <save_dir>/config_tree.log; print it whole when `show`,
    else print one short line (the chosen groups and the overrides)."""
    tree = rich.tree.Tree("CONFIG", style="dim", guide_style="dim")
    fields = [name for name in TREE_ORDER if name in cfg] + [name for name in cfg if name not in (*TREE_ORDER, "hydra")]
    for name in fields:
        branch = tree.add(name, style="bold", guide_style="dim")
        content = OmegaConf.to_yaml(cfg[name], resolve=True) if isinstance(cfg[name], DictConfig) else str(cfg[name])
        branch.add(rich.syntax.Syntax(content, "yaml"))
    recorder = Console(record=True, width=120, file=io.StringIO())
    recorder.print(tree)
    tree_file = save_dir / "config_tree.log"
    write_text_atomic(tree_file, recorder.export_text())
    if show:
        Console().print(tree)
    else:
        log.info("%s; full config in %s", short_config(), tree_file)


def short_config() -> str:
    """'experiment=twemoji_gap data=twemoji ... | overrides: a=1 b=2' from Hydra's record of this run."""
    if not HydraConfig.initialized():
        return "config"
    hydra_cfg = HydraConfig.get()
    choices = " ".join(f"{group}={hydra_cfg.runtime.choices[group]}" for group in SHOWN_CHOICES if hydra_cfg.runtime.choices.get(group))
    overrides = " ".join(hydra_cfg.overrides.task)
    return f"config: {choices}" + (f" | overrides: {overrides}" if overrides else "")


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
            raise UserError(
                f"ckpt_path=last: no {last}. To resume, pass the interrupted run's `run_id=` (its run dir's "
                f"name) and the same experiment and overrides as the first run"
            )
        return str(last)
    if not Path(ckpt_path).is_file():
        raise UserError(f"ckpt_path={ckpt_path}: no such checkpoint file")
    return ckpt_path


def exit_code_of(error: BaseException) -> int:
    """The process exit status an exception stands for (Ctrl-C 130, sys.exit(n) n, a user's mistake 2,
    anything else 1)."""
    if isinstance(error, KeyboardInterrupt):
        return 130
    if isinstance(error, UserError):
        return 2
    if isinstance(error, SystemExit):
        return error.code if isinstance(error.code, int) and error.code != 0 else 1
    return 1


@contextmanager
def run_attempt(run_dir: Path) -> Iterator[None]:
    """One attempt at a run: its state file says running, then finished or failed; the W&B run is
    closed with the real exit code; an error goes to the run's log file with its traceback. Ctrl-C,
    wherever it comes (Lightning's exit(1) after its shutdown included), leaves as KeyboardInterrupt
    with exit code 130 recorded."""
    write_state(run_dir, "running")
    try:
        yield
    except BaseException as error:
        if isinstance(error, SystemExit) and isinstance(error.__context__, KeyboardInterrupt):
            error = error.__context__  # Lightning turns Ctrl-C into exit(1) after its graceful shutdown
        code = exit_code_of(error)
        interrupted = isinstance(error, KeyboardInterrupt)
        write_state(run_dir, "failed", code, "KeyboardInterrupt: interrupted (Ctrl-C)" if interrupted else f"{type(error).__name__}: {error}"[:2000])
        if interrupted:
            log.info("interrupted: %s is recorded as failed; resume it with the same command and run_id=%s ckpt_path=last", run_dir, run_dir.name)
        elif not isinstance(error, UserError):  # the console command logs those itself
            log_to_files(f"run failed (exit code {code})", error)
        finish_wandb(code)
        if interrupted:
            raise KeyboardInterrupt from None  # one interrupted-run path: the command prints one line, exit 130
        raise
    write_state(run_dir, "finished", 0)
    finish_wandb(0)


def finish_wandb(exit_code: int = 0) -> None:
    """Close the W&B run if one is open, with the attempt's exit code (0 = finished, else failed)."""
    if "wandb" in sys.modules:
        import wandb

        if wandb.run is not None:
            wandb.finish(exit_code=exit_code)


def show_metrics(metrics: dict[str, float], title: str) -> None:
    """Print a stage's metrics as a table with their whole names (Lightning's own table cut them with
    "…", so that the _pool90 and _batch90 keys could not be told apart), sorted by name."""
    table = rich.table.Table(title=title, title_justify="left", show_edge=False, box=None)
    table.add_column("metric", overflow="fold", no_wrap=True)
    table.add_column("value", justify="right")
    for name in sorted(metrics):
        table.add_row(name, f"{metrics[name]:.4f}")
    Console(width=max(100, max(map(len, metrics), default=0) + 20)).print(table)


def scalar_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    return {name: float(value) for name, value in metrics.items()}


def metric_value(metrics: dict[str, float], name: str | None) -> float | None:
    """The value Hydra sweepers optimise; fails naming the metric and the ones that exist."""
    if not name:
        return None
    if name not in metrics:
        import difflib

        nearest = difflib.get_close_matches(name, list(metrics), n=3, cutoff=0.0)
        raise UserError(f"optimized_metric={name!r} was not logged ({len(metrics)} metrics were; the nearest: {', '.join(nearest) or 'none'}); "
                        "name one of them (metrics.json in the run dir lists all)")
    return metrics[name]
