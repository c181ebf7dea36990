"""What the project's argparse commands share (memegap-collect, memegap-posts, memegap-search, the study scripts)."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

from hydra.errors import HydraException, InstantiationException
from omegaconf.errors import OmegaConfBaseException
from rich_argparse import ArgumentDefaultsRichHelpFormatter, RawDescriptionRichHelpFormatter


class HelpFormatter(RawDescriptionRichHelpFormatter, ArgumentDefaultsRichHelpFormatter):
    """Rich help that keeps the description's line breaks and shows every option's default."""


def number_in(least: float, greatest: float | None = None, kind: type = int):
    """An argparse `type` that reads a `kind` (int or float) and refuses one outside [least, greatest],
    so that a command's count or size fails at start-up naming the option and the range."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'a whole number' if kind is int else 'a number'}") from None
        if value < least or (greatest is not None and value > greatest):
            allowed = f"≥ {least}" if greatest is None else f"between {least} and {greatest}"
            raise argparse.ArgumentTypeError(f"{text} is out of range: must be {allowed}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def usable_cores() -> int:
    """The CPU cores this process may use (its affinity mask where the OS has one): the bound of the
    counts that start a process each (data.num_workers, data.store_workers) and the store build's default."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def command_console() -> None:
    """The console of the commands outside Hydra (memegap-predict, memegap-geometry, memegap-search): memegap's
    progress at INFO, other libraries' warnings only, each line as it is."""
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("memegap").setLevel(logging.INFO)


def one_line_config_errors(program: str, hydra_main: Callable[[], Any]) -> Callable[[], None]:
    """The console entry point of a Hydra command: a command line that cannot be composed (a misspelt key,
    an unknown option of a group, a missing value) ends in one line and exit status 2, as every other
    mistake of the user's, instead of Hydra's block and exit status 1. With HYDRA_FULL_ERROR=1 set by the
    user Hydra's own report (the whole traceback) is kept."""

    def entry() -> None:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            hydra_main()
            return
        os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra raises instead of printing its block
        try:
            hydra_main()
        except (HydraException, OmegaConfBaseException) as error:
            if isinstance(error, InstantiationException):  # a class that failed to build: a bug, with its traceback
                raise
            print(f"{program}: error: {config_error_line(error)}", file=sys.stderr)
            raise SystemExit(2) from None
        finally:
            del os.environ["HYDRA_FULL_ERROR"]

    return entry


def config_error_line(error: Exception) -> str:
    """One line from Hydra's and OmegaConf's multi-line messages: what is wrong, the key, and for a
    misspelt key the nearest ones of its group (Hydra's advice to add it with `+` is left out: a key the
    class does not take fails at start-up anyway)."""
    lines = []
    for part in (error, error.__cause__):
        if part is None:
            continue
        for line in str(part).splitlines():
            line = line.strip()
            if line.startswith("Config search path"):
                break  # Hydra's search path follows: where it looked, not what is wrong
            if line and not line.startswith(("To append to your config", "full_key:", "object_type=", "reference_type=")) and line not in lines:
                lines.append(line.rstrip("."))
    cause = error.__cause__ if isinstance(error.__cause__, OmegaConfBaseException) else error
    full_key, kind = getattr(cause, "full_key", None), getattr(cause, "object_type", None)
    if full_key and isinstance(kind, type) and dataclasses.is_dataclass(kind) and "not in" in str(cause):  # a misspelt key
        import difflib

        nearest = difflib.get_close_matches(str(full_key).rsplit(".", 1)[-1], [field.name for field in dataclasses.fields(kind)], n=3)
        if nearest:
            lines.append("did you mean " + " or ".join(f"{str(full_key).rsplit('.', 1)[0]}.{name}" for name in nearest) + "?")
    return "; ".join(lines).replace("Available options in", "options of").replace(":;", ":")
