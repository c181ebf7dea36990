"""Atomic file writes: a temp file in the target folder, renamed only when complete. The written file
keeps the mode of the file it replaces; a new file gets the user's umask, like any other file."""

from __future__ import annotations

import functools
import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _temporary_affixes(target: Path) -> tuple[str, str]:
    """Prefix and suffix of atomic_path's temporary files for `target`: '.<name>.' and its suffix."""
    return f".{target.name}.", target.suffix or ".tmp"


@functools.cache
def _process_umask() -> int:
    """The process's umask (read once: setting it to read it is not safe while other threads create files)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _final_mode(target: Path) -> int:
    """The mode `target` should have after the write: its own when it exists, else 0o666 less the umask."""
    try:
        return stat.S_IMODE(os.stat(target).st_mode)
    except FileNotFoundError:
        return 0o666 & ~_process_umask()


@contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `target`; on success it replaces `target` (with the mode of the file
    it replaces, or the umask's for a new one), on error it is removed."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    prefix, suffix = _temporary_affixes(target)
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=prefix, suffix=suffix)
    os.close(handle)
    try:
        yield Path(temporary)
        os.chmod(temporary, _final_mode(target))
        os.replace(temporary, target)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def remove_stale_temporaries(target: str | Path) -> int:
    """Delete the temporary files that atomic_path(target) left behind in a process that was killed
    (SIGKILL skips its clean-up); `target` itself is untouched. Only for a target that no other live
    process is writing. Returns how many were removed."""
    target = Path(target)
    prefix, suffix = _temporary_affixes(target)
    stale = [path for path in target.parent.glob(f"{prefix}*{suffix}") if path.is_file()]  # none when no folder
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)


def write_text_atomic(target: str | Path, text: str) -> None:
    with atomic_path(target) as temporary:
        temporary.write_text(text, encoding="utf-8")
