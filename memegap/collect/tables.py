"""Parquet tables written atomically (temp file + rename), read back as lists of dicts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from memegap.utils.io import atomic_path


def write_rows(path: Path, rows: list[dict[str, Any]], schema: pa.Schema) -> None:
    table = pa.Table.from_pylist(rows, schema=schema)
    with atomic_path(path) as temporary:
        pq.write_table(table, temporary)


def read_rows(path: Path) -> list[dict[str, Any]]:
    if not Path(path).exists():
        return []
    return pq.read_table(path).to_pylist()
