"""Expected user mistakes, and how every console command reports them.

A `UserError` is a mistake the user can fix (a missing file, a wrong key, a refused server, a run dir
that already holds a run). Its message names the file, key or column at fault and what to do. The
commands print it as one line (`memegap-train: error: ...`) and keep the traceback for the log file
or for `--verbose`; any other exception is a bug and shows its full traceback.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager


class UserError(Exception):
    """A mistake the user can fix; the message says which key, file or column, and what to do."""


def log_to_files(message: str, error: BaseException) -> None:
    """Write `message` and the traceback of `error` to the file handlers of the root logger only (the
    run dir's log under Hydra), so the console keeps its one line."""
    record = logging.getLogger("memegap").makeRecord(
        "memegap", logging.ERROR, __file__, 0, message, (), (type(error), error, error.__traceback__)
    )
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def log_file_paths() -> list[str]:
    """Paths of the root logger's log files (the run dir's `<task>.log` under Hydra)."""
    return [handler.baseFilename for handler in logging.getLogger().handlers if isinstance(handler, logging.FileHandler)]


@contextmanager
def reported_as_one_line(program: str, verbose: bool = False, verbose_hint: str = "--verbose", interrupted: str = "interrupted (Ctrl-C)") -> Iterator[None]:
    """Turn a UserError into one line on stderr and exit status 2 (traceback in the log file), and
    Ctrl-C into one line and exit status 130; with verbose=True both propagate with their traceback."""
    try:
        yield
    except KeyboardInterrupt:
        if verbose:
            raise
        print(f"{program}: {interrupted}", file=sys.stderr)
        raise SystemExit(130) from None
    except UserError as error:
        if verbose:
            raise
        log_to_files(f"{program}: {error}", error)
        files = log_file_paths()
        where = f" (details in {files[0]})" if files else f" (add {verbose_hint} for the traceback)"
        print(f"{program}: error: {error}{where}", file=sys.stderr)
        raise SystemExit(2) from None
