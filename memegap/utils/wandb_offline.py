"""Read back the history of an offline W&B run (`<save_dir>/wandb/offline-run-*/run-<id>.wandb`).

The .wandb file is a LevelDB-style log: a 7-byte file header (":W&B", magic 0xBEE1, version), then
32 KiB blocks of chunks, each with a 7-byte header (crc32c, length, type FULL/FIRST/MIDDLE/LAST);
a complete chunk sequence is one protobuf `Record`. We keep the `history` records as dicts.
wandb.finish() can return a few milliseconds before wandb-core has written the last records: a reader
that runs right after it should re-read until the key it expects is there.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

FILE_HEADER = struct.Struct("<4sHB")
CHUNK_HEADER = struct.Struct("<IHB")
BLOCK_SIZE = 32768
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def iter_record_bytes(path: Path):
    """Yield the payload of every complete record in a .wandb log file."""
    data = Path(path).read_bytes()
    ident, magic, _version = FILE_HEADER.unpack_from(data, 0)
    if ident != b":W&B" or magic != 0xBEE1:
        raise ValueError(f"{path} is not a W&B run log (header {ident!r}, magic {magic:#x})")
    offset, pending = FILE_HEADER.size, b""
    while offset + CHUNK_HEADER.size <= len(data):
        space_in_block = BLOCK_SIZE - offset % BLOCK_SIZE
        if space_in_block < CHUNK_HEADER.size:  # block trailer padding
            offset += space_in_block
            continue
        _checksum, length, kind = CHUNK_HEADER.unpack_from(data, offset)
        if kind == 0 and length == 0:  # zero padding at the end of a block
            offset += space_in_block
            continue
        start = offset + CHUNK_HEADER.size
        chunk = data[start : start + length]
        offset = start + length
        if kind == FULL:
            yield chunk
        elif kind == FIRST:
            pending = chunk
        elif kind == MIDDLE:
            pending += chunk
        elif kind == LAST:
            yield pending + chunk
            pending = b""


def read_history(run_file: Path) -> list[dict[str, Any]]:
    """Every history row logged to the run, in order, as {key: decoded JSON value}."""
    from wandb.proto import wandb_internal_pb2

    rows = []
    for payload in iter_record_bytes(run_file):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(payload)
        if record.WhichOneof("record_type") == "history":
            rows.append({"/".join(item.nested_key) or item.key: json.loads(item.value_json) for item in record.history.item})
    return rows


def read_exit_codes(run_file: Path) -> list[int]:
    """The exit code of every `exit` record of the run (one per finished attempt): 0 = finished, else failed."""
    from wandb.proto import wandb_internal_pb2

    codes = []
    for payload in iter_record_bytes(run_file):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(payload)
        if record.WhichOneof("record_type") == "exit":
            codes.append(record.exit.exit_code)
    return codes


def find_run_files(save_dir: Path) -> list[Path]:
    """The .wandb files of the offline runs under a logger's save_dir, oldest first."""
    return sorted(Path(save_dir).glob("wandb/offline-run-*/run-*.wandb"))


def read_artifacts(run_file: Path) -> list[dict[str, Any]]:
    """Every artifact the run logged: {"name", "type", "files": [paths inside the artifact]}."""
    from wandb.proto import wandb_internal_pb2

    artifacts = []
    for payload in iter_record_bytes(run_file):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(payload)
        if record.WhichOneof("record_type") == "artifact":
            artifact = record.artifact
            artifacts.append({"name": artifact.name, "type": artifact.type, "files": [entry.path for entry in artifact.manifest.contents]})
    return artifacts
