"""The repository carries code and pages, not data a script can make again.

A session's submission is refused whole above 512 MiB packed (and 256 MiB of diffs): one earlier session
lost all its work that way. Generated data (image stores, embeddings, run dirs, benchmark stores) belongs
under the ignored folders (.gitignore), never in a commit. This test fails on a tracked file over 2 MB or
tracked files over 30 MB in all, so `make test` catches a large `git add` before it is committed.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LARGEST_FILE_BYTES = 2 * 1024 * 1024
ALL_FILES_BYTES = 30 * 1024 * 1024


def tracked_files() -> list[Path]:
    """The files git tracks (staged ones included) that exist in the work tree."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: nothing is committed from here")
    listing = subprocess.run(["git", "ls-files", "-z", "--cached"], cwd=ROOT, capture_output=True, check=True).stdout
    paths = [ROOT / name for name in listing.decode().split("\0") if name]
    return [path for path in paths if path.is_file()]


def test_no_tracked_file_is_data() -> None:
    sizes = {path.relative_to(ROOT).as_posix(): path.stat().st_size for path in tracked_files()}
    large = {name: size for name, size in sizes.items() if size > LARGEST_FILE_BYTES}
    assert not large, f"tracked files over {LARGEST_FILE_BYTES:,} bytes (generated data? add it to .gitignore): {large}"
    total = sum(sizes.values())
    assert total <= ALL_FILES_BYTES, f"tracked files hold {total:,} bytes in all (limit {ALL_FILES_BYTES:,}): largest {sorted(sizes.items(), key=lambda item: -item[1])[:5]}"
