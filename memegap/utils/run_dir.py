"""What makes a run dir safe to use: one run per dir, resumes that match the first config, a state
file that tells a finished run from a failed one, and metrics that are merged, never shrunk.

Files this module owns in `logs/<task>/runs/<run_id>/`:
- `run_state.json`: {"status": "running" | "finished" | "failed", "started_at", "ended_at",
  "exit_code", "error"}; written atomically at the start and at the end of every attempt.
- `metrics.json`: {stage: {metric: value}}; each save merges into what the file holds.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from memegap.errors import UserError
from memegap.utils.io import write_text_atomic

log = logging.getLogger(__name__)

STATE_FILE = "run_state.json"
METRICS_FILE = "metrics.json"
CONFIG_KEY = "memegap_config"  # where checkpoints keep the data/model config they were trained with
# Keys (or key prefixes) that change neither the model nor the data it sees: a resume may change them,
# and an evaluation may also change those that only shape training (its batches, optimiser, schedule).
RESUME_MAY_CHANGE = ("data.num_workers", "data.eval_batch_size", "data.store_dir")  # store_dir: where the image cache lives
EVAL_MAY_CHANGE = (*RESUME_MAY_CHANGE, "data.batch_size", "model.optimizer.", "model.warmup_steps", "model.check_adapter_gradients")


def holds_a_run(run_dir: Path) -> bool:
    """Whether `run_dir` holds results a new start would destroy: metrics or a checkpoint. (An attempt
    that failed before saving either, e.g. on a wrong config value, may simply be started again.)"""
    return (run_dir / METRICS_FILE).exists() or any((run_dir / "checkpoints").glob("*.ckpt"))


def read_state(run_dir: Path) -> dict[str, Any] | None:
    """The run's state; a run dir from before state files counts as finished when it has test metrics."""
    path = run_dir / STATE_FILE
    if path.exists():
        return json.loads(path.read_text())
    if "test" in read_metrics(run_dir):
        return {"status": "finished"}
    return None


def write_state(run_dir: Path, status: str, exit_code: int | None = None, error: str | None = None) -> None:
    state = read_state(run_dir) or {}
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    if status == "running":
        state = {"status": status, "started_at": now, "attempts": state.get("attempts", 0) + 1}
    else:
        state |= {"status": status, "ended_at": now, "exit_code": exit_code, "error": error}
    write_text_atomic(run_dir / STATE_FILE, json.dumps(state, indent=2) + "\n")


def claim_run_dir(run_dir: Path, ckpt_path: str | None, command: str = "memegap-train") -> dict[str, Any] | None:
    """Check that this command may write into `run_dir`; returns the earlier run's state (None: new dir).

    A dir holding a run is only continued on purpose (`ckpt_path=...`); a new start there is refused,
    since it would mix old and new checkpoints, metrics and W&B history.
    """
    if not holds_a_run(run_dir):
        return None
    if ckpt_path is None:
        raise UserError(
            f"the run dir {run_dir} already holds a run. To continue it, add ckpt_path=last (with the same "
            f"overrides as the first run); to start a new run, pass another run_id= or leave run_id out"
            if command == "memegap-train"
            else f"the run dir {run_dir} already holds an evaluation: pass another run_id= or leave run_id out"
        )
    return read_state(run_dir) or {"status": "unknown"}


def read_metrics(run_dir: Path) -> dict[str, dict[str, float]]:
    path = run_dir / METRICS_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def save_metrics(run_dir: Path, metrics: dict[str, dict[str, float]]) -> Path:
    """Merge `metrics` ({stage: {name: value}}) into metrics.json: a stage with values replaces the
    stored one, an empty stage never does, and stages not given are kept."""
    merged = read_metrics(run_dir)
    merged |= {stage: values for stage, values in metrics.items() if values}
    path = run_dir / METRICS_FILE
    write_text_atomic(path, json.dumps(merged, indent=2, sort_keys=True) + "\n")
    return path


def model_and_data_config(cfg: DictConfig) -> dict[str, Any]:
    """The parts of a config that decide the model and the data it sees, as plain values."""
    return {key: OmegaConf.to_container(cfg[key], resolve=True) for key in ("data", "model") if key in cfg}


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        flat: dict[str, Any] = {}
        for key, value in tree.items():
            flat |= flatten(value, f"{prefix}.{key}" if prefix else str(key))
        return flat
    return {prefix: tree}


def config_differences(first: dict[str, Any], now: dict[str, Any], may_change: tuple[str, ...] = RESUME_MAY_CHANGE) -> list[str]:
    """'key: first → now' for every data/model key whose value differs, keys in `may_change` left out."""
    before, after = flatten(first), flatten(now)
    keys = sorted(key for key in set(before) | set(after) if not key.startswith(may_change))
    missing = "<absent>"
    return [f"{key}: {before.get(key, missing)!r} → {after.get(key, missing)!r}" for key in keys if before.get(key, missing) != after.get(key, missing)]


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a Lightning checkpoint (weights_only) or fail naming the file, before any work is done."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:  # torch raises many types for a truncated or foreign file
        raise UserError(f"ckpt_path={path}: not a readable checkpoint ({type(error).__name__}: {str(error)[:200]})") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise UserError(f"ckpt_path={path}: not a Lightning checkpoint (no state_dict)")
    return checkpoint


# How many differing keys a refused checkpoint's message names (a checkpoint of another experiment
# differs in dozens: the message named them all, one 3,212-character line).
SHOWN_DIFFERENCES = 4


def check_checkpoint_config(checkpoint: dict[str, Any], path: str | Path, cfg: DictConfig, may_change: tuple[str, ...] = RESUME_MAY_CHANGE) -> None:
    """Refuse a checkpoint trained with other data or model settings than `cfg`, naming the keys
    (`allow_config_change=true` overrides, for a deliberate change); keys in `may_change` may differ."""
    stored = checkpoint.get(CONFIG_KEY)
    if stored is None:
        log.warning("%s holds no record of its config: the data and model settings cannot be checked", path)
        return
    differences = config_differences(stored, model_and_data_config(cfg), may_change)
    if differences and not cfg.get("allow_config_change"):
        shown = "; ".join(differences[:SHOWN_DIFFERENCES]) + (f"; and {len(differences) - SHOWN_DIFFERENCES} more" if len(differences) > SHOWN_DIFFERENCES else "")
        raise UserError(
            f"{path} was trained with other settings than this config ({len(differences)} keys differ): {shown}. "
            "Repeat the first run's overrides (or the same experiment), or add allow_config_change=true if the change is deliberate"
        )
    if differences:
        log.warning("allow_config_change=true: running with changed settings: %s", "; ".join(differences))


# When this process started: a `.hydra/attempt-*` folder made after it is this invocation's.
PROCESS_START = datetime.now().timestamp()


class StartRecord:
    """What a command line invocation's Hydra wrote into `run_dir` before memegap's first check: the run
    dir itself (a new one: `.hydra/` and the log file), or in an earlier run's dir the config of this
    attempt (`.hydra/attempt-<time>`) and the log file's new lines. `undo()` takes it all back, so that
    a refused start (a wrong value, a resume of a finished run) changes nothing. Outside Hydra's own
    run dir (in-process calls, tests) there is nothing to undo.

    Used around a command's start-up checks: `with StartRecord(run_dir) as start: ...` undoes on a
    UserError (and lets it through); call `start.undo()` for a start that has nothing to do."""

    def __init__(self, run_dir: Path) -> None:
        from hydra.core.hydra_config import HydraConfig

        self.run_dir = Path(run_dir)
        hydra_dir = OmegaConf.select(HydraConfig.get(), "runtime.output_dir", default=None) if HydraConfig.initialized() else None  # missing when composed in-process
        self.active = bool(hydra_dir) and Path(hydra_dir).resolve() == self.run_dir.resolve()
        self.log_sizes = {path: path.stat().st_size for path in self._log_files() if path.exists()} if self.active else {}
        self.new_dir = self.active and not holds_a_run(self.run_dir) and not (self.run_dir / STATE_FILE).exists() and not any((self.run_dir / ".hydra").glob("attempt-*"))

    def __enter__(self) -> StartRecord:
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if isinstance(error, UserError):
            self.undo()  # a refused start leaves nothing behind

    def _log_files(self) -> list[Path]:
        return [Path(h.baseFilename) for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler) and self.run_dir.resolve() in Path(h.baseFilename).resolve().parents]

    def undo(self) -> None:
        if not self.active:
            return
        import shutil

        root = logging.getLogger()
        for handler in [h for h in root.handlers if isinstance(h, logging.FileHandler) and Path(h.baseFilename) in self.log_sizes]:
            root.removeHandler(handler)  # nothing more is written to the run's log by this invocation
            handler.close()
        if self.new_dir:
            shutil.rmtree(self.run_dir, ignore_errors=True)
            return
        for attempt in (self.run_dir / ".hydra").glob("attempt-*"):
            if attempt.stat().st_mtime >= PROCESS_START - 1:
                shutil.rmtree(attempt, ignore_errors=True)
        for path, size in self.log_sizes.items():
            with open(path, "r+b") as handle:
                handle.truncate(size)
