"""Reading a memes table: one schema for every source (the memes thesis, 000).

Table schema (parquet or CSV): `id, created_at, likes, text, image_path`, optional `author`,
`template_url`, `download_status`. Two layouts are read:
- memegap's own (`memegap-collect twitter` then `download`): those columns (`account` as author);
- the Reddit memes of ../shared/data/memes_reddit (`id, created_utc, author, ups, title, file`):
  `ups` → likes, `created_utc` (Unix seconds) → created_at, `title` → text, `file` → image_path.
A missing column, a negative or non-numeric like count or a duplicate id is an error naming the file,
the data row (1 = first) and the column; with `bad_rows=skip` such rows are counted and skipped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from memegap.errors import UserError
from memegap.utils.tables import read_user_columns, resolve_path

MEMEGAP_COLUMNS = ("id", "created_at", "likes", "text", "image_path")
REDDIT_COLUMNS = ("id", "created_utc", "ups", "title", "file")
OPTIONAL_COLUMNS = ("author", "account", "template_url", "download_status")


@dataclass(frozen=True)
class Meme:
    id: str
    created_at: float  # Unix seconds, UTC
    likes: int
    text: str
    image: Path | None
    author: str | None = None
    template_url: str | None = None
    download_status: str | None = None


@dataclass(frozen=True)
class MemesTable:
    memes: list[Meme]
    bad_rows: int  # skipped (always 0 with bad_rows="error")


def read_memes_table(path: str | Path, bad_rows: str = "error") -> MemesTable:
    """The memes of a table in either layout (see the module docstring)."""
    path = Path(path)
    try:
        columns = read_user_columns(path, REDDIT_COLUMNS, optional=OPTIONAL_COLUMNS)
        layout = {"created_at": "created_utc", "likes": "ups", "text": "title", "image_path": "file"}
    except UserError as error:
        if "no column" not in str(error):
            raise
        columns = read_user_columns(path, MEMEGAP_COLUMNS, optional=OPTIONAL_COLUMNS, hint=" (a memes table needs id, created_at, likes, text, image_path; or the Reddit layout id, created_utc, ups, title, file)")
        layout = {name: name for name in MEMEGAP_COLUMNS}
    memes, skipped, row_of_id = [], 0, {}
    for index in range(len(columns["id"])):
        cell = {name: values[index] for name, values in columns.items()}
        try:
            meme = parse_meme(cell, layout, path)
            if meme.id in row_of_id:
                raise ValueError("id", f"{meme.id!r} repeats data row {row_of_id[meme.id] + 1}")
        except ValueError as error:
            column, reason = error.args
            if bad_rows == "skip":
                skipped += 1
                continue
            raise UserError(f"{path}: data row {index + 1}, column {column}: {reason}; fix the row or set data.bad_rows=skip") from None
        row_of_id[meme.id] = index
        memes.append(meme)
    if not memes:
        raise UserError(f"{path}: no memes in the table ({skipped} rows skipped as bad): a table of memes needs at least one data row")
    return MemesTable(memes, skipped)


def parse_meme(cell: dict, layout: dict[str, str], table: Path) -> Meme:
    """One row as a Meme, or ValueError(column, reason)."""
    if cell["id"] in (None, ""):
        raise ValueError("id", "empty")
    likes_column = layout["likes"]
    try:
        likes = float(cell[likes_column])
    except (TypeError, ValueError):
        raise ValueError(likes_column, f"{cell[likes_column]!r} is not a number") from None
    if not math.isfinite(likes) or likes < 0 or likes != int(likes):
        raise ValueError(likes_column, f"{cell[likes_column]!r} is not a count of likes (a whole number ≥ 0)")
    created_column = layout["created_at"]
    try:
        raw = cell[created_column]
        numeric = isinstance(raw, (int, float)) or (isinstance(raw, str) and raw.replace(".", "", 1).isdigit())
        stamp = pd.Timestamp(float(raw), unit="s", tz="UTC") if numeric else pd.Timestamp(raw)
        stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp
        created_at = stamp.timestamp()
    except (TypeError, ValueError):
        raise ValueError(created_column, f"{cell[created_column]!r} is not a time") from None
    stored = cell[layout["image_path"]]
    return Meme(
        id=str(cell["id"]),
        created_at=created_at,
        likes=int(likes),
        text=str(cell[layout["text"]] or ""),
        image=resolve_path(table, stored) if stored else None,
        author=cell.get("author") or cell.get("account"),
        template_url=cell.get("template_url") or None,
        download_status=cell.get("download_status"),
    )
