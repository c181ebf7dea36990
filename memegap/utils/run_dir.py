"""What makes a run dir safe to use: one run per dir, resumes that match the first config, a state
file that tells a finished run from a failed one, and metrics that are merged, never shrunk.

Files this module owns in `logs/<task>/runs/<run_id>/`:
- `run_state.json`: {"status": "running" | "finished" | "failed", "started_at", "ended_at",
  "exit_code", "error"}; written atomically at the start and at the end of every attempt. A state
  that says "running" while no process holds the run dir's lock was killed from outside (the OOM
  killer, kill -9, a lost machine): the next read records it as failed, saying so.
- `metrics.json`: {stage: {metric: value}}; each save merges into what the file holds.
- `.run.lock`: the claim of the run dir. The process that runs in it holds an exclusive flock on it
  from its first moment (Hydra's config resolver) to its end; the kernel releases it when the process
  ends in any way, so a second start at the same moment is refused, and a crash leaves no stale claim.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
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


LOCK_FILE = ".run.lock"
_held_locks: dict[Path, tuple[int, bool, bool]] = {}  # run dir -> (descriptor of this process's lock, made the dir, made the file)
# Rank variables of the launchers: a DDP process of rank > 0 works in its rank 0's run dir, which holds the lock.
RANK_VARIABLES = ("LOCAL_RANK", "NODE_RANK", "RANK", "SLURM_PROCID")


def is_secondary_process() -> bool:
    """Whether this is a DDP process of rank > 0 (Lightning's subprocess launcher, torchrun, SLURM)."""
    return any(os.environ.get(name, "0").isdigit() and int(os.environ.get(name, "0")) > 0 for name in RANK_VARIABLES)


def lock_run_dir(run_dir: Path) -> bool:
    """Take this process's exclusive claim of `run_dir` (made if missing), kept until `release_run_dir`
    or the process's end; False when another process holds it. Taking it again is a no-op."""
    key = Path(run_dir).resolve()
    if key in _held_locks or is_secondary_process():
        return True
    made_dir, made_file = not key.exists(), not (key / LOCK_FILE).exists()
    key.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(key / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        return False
    _held_locks[key] = (descriptor, made_dir, made_file)
    return True


def release_run_dir(run_dir: Path, forget: bool = False) -> None:
    """Release this process's claim; forget=True (a refused start) also removes the lock file and the
    dir when this process made them and nothing else is in the dir."""
    key = Path(run_dir).resolve()
    held = _held_locks.pop(key, None)
    if held is None:
        return
    descriptor, made_dir, made_file = held
    if forget and made_file:
        (key / LOCK_FILE).unlink(missing_ok=True)
        if made_dir and not any(key.iterdir()):
            key.rmdir()
    os.close(descriptor)  # closing the descriptor releases the flock


@contextmanager
def run_dir_released(run_dir: Path) -> Iterator[None]:
    """Release this process's claim of `run_dir` when the block ends, however it ends."""
    try:
        yield
    finally:
        release_run_dir(run_dir)


def is_held_elsewhere(run_dir: Path) -> bool:
    """Whether another process holds `run_dir`'s claim now (a run is really running there)."""
    key = Path(run_dir).resolve()
    if key in _held_locks or not (key / LOCK_FILE).exists():
        return False
    descriptor = os.open(key / LOCK_FILE, os.O_RDONLY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(descriptor)


def holds_a_run(run_dir: Path) -> bool:
    """Whether `run_dir` holds results a new start would destroy: metrics or a checkpoint. (An attempt
    that failed before saving either, e.g. on a wrong config value, may simply be started again.)"""
    return (run_dir / METRICS_FILE).exists() or any((run_dir / "checkpoints").glob("*.ckpt"))


def read_state(run_dir: Path) -> dict[str, Any] | None:
    """The run's state; a run dir from before state files counts as finished when it has test metrics."""
    path = run_dir / STATE_FILE
    if path.exists():
        state = json.loads(path.read_text())
        if state.get("status") == "running" and Path(run_dir).resolve() not in _held_locks and not is_secondary_process() \
                and not is_held_elsewhere(run_dir):
            state |= {"status": "failed", "exit_code": None, "error": KILLED}
            write_text_atomic(path, json.dumps(state, indent=2) + "\n")
        return state
    if "test" in read_metrics(run_dir):
        return {"status": "finished"}
    return None


KILLED = ("killed from outside: the process ended without recording its end (out of memory, kill -9, or a lost "
          "machine); resume it with its run_id= and ckpt_path=last if it saved a checkpoint")


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
    since it would mix old and new checkpoints, metrics and W&B history; a dir another process is
    running in is refused whatever the command (one run per dir, even at the same moment). A new start
    in a dir without a run (an earlier start failed before its first checkpoint) removes the earlier
    starts' attempt configs: `.hydra/config.yaml` is then this start's (see config_subdir below).
    """
    if not lock_run_dir(run_dir):
        raise UserError(f"another command is running in the run dir {run_dir} right now (it holds {Path(run_dir) / LOCK_FILE}): "
                        "wait for it to end, or pass another run_id=")
    if not holds_a_run(run_dir):
        for attempt in (Path(run_dir) / ".hydra").glob("attempt-*"):
            if attempt.stat().st_mtime < PROCESS_START - 1:
                shutil.rmtree(attempt, ignore_errors=True)
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


def load_checkpoint(path: str | Path, option: str = "ckpt_path") -> dict[str, Any]:
    """Read a Lightning checkpoint (weights_only) or fail naming the file, before any work is done."""
    if not Path(path).is_file():
        raise UserError(f"{option}={path}: no such checkpoint file" + (" (a folder: pass a .ckpt file in it)" if Path(path).is_dir() else ""))
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:  # torch raises many types for a truncated or foreign file
        raise UserError(f"{option}={path}: not a readable checkpoint ({type(error).__name__}: {str(error)[:200]})") from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise UserError(f"{option}={path}: not a Lightning checkpoint (no state_dict)")
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
    now = model_and_data_config(cfg)
    differences = config_differences(stored, now, may_change)
    shown = "; ".join(differences[:SHOWN_DIFFERENCES]) + (f"; and {len(differences) - SHOWN_DIFFERENCES} more" if len(differences) > SHOWN_DIFFERENCES else "")
    trained_kind, kind = (stored.get("model") or {}).get("_target_"), (now.get("model") or {}).get("_target_")
    if trained_kind and kind and trained_kind != kind:  # no setting makes these weights load into another kind of model
        raise UserError(
            f"{path} is a checkpoint of {trained_kind.rsplit('.', 1)[-1]}, not of this config's {kind.rsplit('.', 1)[-1]} "
            f"({len(differences)} keys differ: {shown}): use the experiment and overrides it was trained with"
        )
    if differences and not cfg.get("allow_config_change"):
        raise UserError(
            f"{path} was trained with other settings than this config ({len(differences)} keys differ): {shown}. "
            "Repeat the first run's overrides (or the same experiment), or add allow_config_change=true if the change is deliberate "
            "(the model's weights must still fit: the same kind of model, of the same sizes)"
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
        # Another process runs in this dir: Hydra gave this start a throwaway config folder (config_subdir).
        self.shared = self.active and not lock_run_dir(self.run_dir)
        self.new_dir = not self.shared and self.active and not holds_a_run(self.run_dir) and not (self.run_dir / STATE_FILE).exists() and not any((self.run_dir / ".hydra").glob("attempt-*"))

    def __enter__(self) -> StartRecord:
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if isinstance(error, Exception):
            self.undo()  # a refused or failed start leaves nothing behind

    def _log_files(self) -> list[Path]:
        return [Path(h.baseFilename) for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler) and self.run_dir.resolve() in Path(h.baseFilename).resolve().parents]

    def undo(self) -> None:
        if not self.active:
            release_run_dir(self.run_dir, forget=True)
            return
        root = logging.getLogger()
        for handler in [h for h in root.handlers if isinstance(h, logging.FileHandler) and Path(h.baseFilename) in self.log_sizes]:
            root.removeHandler(handler)  # nothing more is written to the run's log by this invocation
            handler.close()
        if self.shared:  # the dir and its log are the other process's: only this start's own folder goes
            shutil.rmtree(self.run_dir / ".hydra" / f"refused-{os.getpid()}", ignore_errors=True)
            return
        release_run_dir(self.run_dir, forget=True)
        if self.new_dir:
            shutil.rmtree(self.run_dir, ignore_errors=True)
            return
        for attempt in (self.run_dir / ".hydra").glob("attempt-*"):
            if attempt.stat().st_mtime >= PROCESS_START - 1:
                shutil.rmtree(attempt, ignore_errors=True)
        for path, size in self.log_sizes.items():
            with open(path, "r+b") as handle:
                handle.truncate(size)


# The resolvers of the Hydra run dir (conf/hydra/default.yaml; registered by config.register_configs).

def config_subdir(run_dir: str) -> str:
    """Where Hydra saves this invocation's config in the run dir, and the claim of the dir (its lock,
    taken here, the first code of ours Hydra runs after making the dir): `.hydra` when the dir holds no
    run yet (so `.hydra/config.yaml` is always the config of the run that trained its checkpoints, even
    after a refused or failed start), `.hydra/attempt-<time>` for a resume of a run, and a throwaway
    `.hydra/refused-<pid>` when another process runs in the dir (the start is then refused)."""
    if not lock_run_dir(Path(run_dir)):
        return f".hydra/refused-{os.getpid()}"
    if holds_a_run(Path(run_dir)):
        return f".hydra/attempt-{datetime.now():%Y-%m-%d_%H-%M-%S}"
    return ".hydra"


def run_name(run_id: Any) -> str:
    """`run_id` as the name of a run dir: one path component (no `/`, not `.` or `..`), so that a run
    dir is always logs/<task>/runs/<run_id>. Used by the Hydra run dir's interpolation."""
    name = str(run_id)
    if not name or "/" in name or "\\" in name or name in (".", "..") or name.startswith("-"):
        print(f"memegap: error: run_id={name}: a run_id is a name, not a path (letters, digits, '-', '_', '.'): "
              "the run dir is always logs/<task>/runs/<run_id>", file=sys.stderr)
        raise SystemExit(2)
    return name
