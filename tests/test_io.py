"""Atomic writes: a writer killed mid-way leaves the target intact and a temporary that is cleaned up later."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

from memegap.utils.io import remove_stale_temporaries, write_text_atomic

KILLED_WRITER = """
import os, sys
from memegap.utils.io import atomic_path
with atomic_path(sys.argv[1]) as temporary:
    temporary.write_text("half written")
    os._exit(9)  # like SIGKILL: no finally, no rename
"""


def test_a_killed_writer_leaves_the_target_and_a_removable_temporary(tmp_path):
    target = tmp_path / "manifest.parquet"
    write_text_atomic(target, "complete")
    other = tmp_path / "other.parquet"
    other.write_text("not ours")
    assert subprocess.run([sys.executable, "-c", KILLED_WRITER, str(target)]).returncode == 9
    assert target.read_text() == "complete"
    assert len(list(tmp_path.glob(".manifest.parquet.*"))) == 1
    assert remove_stale_temporaries(target) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.parquet", "other.parquet"]
    assert remove_stale_temporaries(tmp_path / "missing" / "x.json") == 0


def test_an_atomic_write_keeps_the_mode_of_the_file_it_replaces(tmp_path):
    """A user's 644 or read-only 444 table stays 644 / 444 (mkstemp's 600 was kept before)."""
    for mode in (0o644, 0o444, 0o664):
        target = tmp_path / f"table_{mode:o}.csv"
        target.write_text("old")
        os.chmod(target, mode)
        write_text_atomic(target, "new")
        assert (target.read_text(), stat.S_IMODE(target.stat().st_mode)) == ("new", mode)


def test_a_new_file_gets_the_users_umask(tmp_path):
    """A new metrics.json, PNG or page is 0o666 less the umask, like the logs and checkpoints."""
    import memegap.utils.io as io

    for umask in (0o022, 0o027):
        previous = os.umask(umask)
        io._process_umask.cache_clear()  # read again under this test's umask
        try:
            target = tmp_path / f"new_{umask:o}.json"
            write_text_atomic(target, "{}")
            plain = tmp_path / f"plain_{umask:o}.json"
            plain.write_text("{}")  # what open() gives under this umask
        finally:
            os.umask(previous)
            io._process_umask.cache_clear()
        assert stat.S_IMODE(target.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode) == 0o666 & ~umask
