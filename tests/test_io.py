"""Atomic writes: a writer killed mid-way leaves the target intact and a temporary that is cleaned up later."""

from __future__ import annotations

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
