"""Tables on disk: written atomically (temp file + rename), read back as lists of dicts, and a user's
own table (parquet or CSV) updated column by column without losing anything it held.

Paths stored in a table or manifest are relative to that file's folder (`relative_to_table`), so the
table stays valid when it is read from another working directory or the folder is moved as a whole;
`resolve_path` turns a stored path back into a file path.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from memegap.errors import UserError
from memegap.utils.io import atomic_path

TABLE_SUFFIXES = (".parquet", ".csv", ".jsonl")  # JSONL: one JSON object a line


def write_rows(path: Path, rows: list[dict[str, Any]], schema: pa.Schema) -> None:
    table = pa.Table.from_pylist(rows, schema=schema)
    with atomic_path(path) as temporary:
        pq.write_table(table, temporary)


def read_rows(path: Path) -> list[dict[str, Any]]:
    if not Path(path).exists():
        return []
    return pq.read_table(path).to_pylist()


def schema_with_extra_columns(schema: pa.Schema, path: Path) -> pa.Schema:
    """`schema` plus the columns that the parquet file at `path` holds beyond it (a user's own), so a
    rewrite of the table keeps them."""
    if not Path(path).exists():
        return schema
    extra = [field for field in pq.read_schema(path) if field.name not in schema.names]
    return pa.schema([*schema, *extra])


def relative_to_table(path: Path, table: Path) -> str:
    """`path` as stored in the table at `table`: relative to the table's folder."""
    return os.path.relpath(Path(path).resolve(), Path(table).resolve().parent)


def resolve_path(table: Path, stored: str) -> Path:
    """A path read from the table at `table` as a file path (absolute paths are kept as they are)."""
    return Path(stored) if Path(stored).is_absolute() else Path(table).resolve().parent / stored


def read_user_columns(path: Path, columns: tuple[str, ...], hint: str = "", optional: tuple[str, ...] = ()) -> dict[str, list[Any]]:
    """`columns` of a user's table (parquet; CSV as text with empty cells as None; JSONL), one list each,
    and those of the `optional` columns that it has. Errors name the file and what is wrong (a missing
    column's error ends with `hint`); nothing is created."""
    path = Path(path)
    if path.suffix not in TABLE_SUFFIXES:
        raise UserError(f"{path}: a table must be .parquet, .csv or .jsonl")
    if not path.is_file():
        raise UserError(f"{path}: no such table (check the path; nothing was created)")
    try:
        if path.suffix == ".parquet":
            table = pq.read_table(path)
            present, values = table.column_names, lambda name: table.column(name).to_pylist()
        elif path.suffix == ".jsonl":
            frame = pd.read_json(path, lines=True, dtype=False)
            present, values = list(frame.columns), lambda name: [None if cell is None or cell == "" or (isinstance(cell, float) and cell != cell) else cell
                                                                 for cell in frame[name].tolist()]
        else:
            frame = pd.read_csv(path, dtype=str, keep_default_na=False)
            present, values = list(frame.columns), lambda name: [cell or None for cell in frame[name].tolist()]
    except Exception as error:  # pyarrow and pandas raise many types for a broken file
        raise UserError(f"{path}: not a readable {path.suffix[1:]} table ({type(error).__name__}: {str(error)[:200]})") from None
    missing = [column for column in columns if column not in present]
    if missing:
        raise UserError(f"{path}: no column {', '.join(missing)} (it has: {', '.join(map(str, present))}){hint}")
    return {column: values(column) for column in (*columns, *(name for name in optional if name in present))}


def line_ending(path: Path) -> str:
    """The line ending of a text file's first line: '\r\n', '\r' (old Mac exports) or '\n'."""
    with open(path, "rb") as handle:
        head = handle.read(65536)
    for ending in (b"\r\n", b"\r", b"\n"):
        if ending in head:
            return ending.decode()
    return "\n"


def update_user_table(path: Path, columns: dict[str, list[Any]]) -> None:
    """Set (or add) `columns` in the table at `path`, keeping every other column, row and, for
    parquet, type and metadata as they were; written atomically in the table's own format."""
    path = Path(path)
    if path.suffix == ".parquet":
        table = pq.read_table(path)
        for name, values in columns.items():
            array = pa.array(values, type=pa.string())
            index = table.schema.get_field_index(name)
            table = table.set_column(index, name, array) if index >= 0 else table.append_column(name, array)
        with atomic_path(path) as temporary:
            pq.write_table(table, temporary)
    elif path.suffix == ".jsonl":
        frame = pd.read_json(path, lines=True, dtype=False)
        for name, values in columns.items():
            frame[name] = values
        with atomic_path(path) as temporary:
            frame.to_json(temporary, orient="records", lines=True, force_ascii=False)
    else:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        for name, values in columns.items():
            frame[name] = ["" if value is None else value for value in values]
        # csv quotes only fields holding characters of its own line ending: a field with another line
        # break (\n in a file of \r lines) would split its row on reading, so quote every field then
        breaks = frame.apply(lambda column: column.str.contains("[\r\n]", regex=True)).to_numpy().any()
        with atomic_path(path) as temporary:
            frame.to_csv(temporary, index=False, lineterminator=line_ending(path), quoting=csv.QUOTE_ALL if breaks else csv.QUOTE_MINIMAL)
