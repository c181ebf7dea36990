"""What the project's argparse commands share (memegap-collect, memegap-posts, memegap-search, the study scripts)."""

from __future__ import annotations

import argparse
import logging
import os

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
