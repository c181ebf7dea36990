"""The packed image store: every data source decodes its images once per (source, image size) into
litdata's chunked format, and later runs read the chunks, never the image files.

Layout of a store, `<root>/<source>/<size>px/`:
- `chunk-*.bin`, `index.json`: litdata's optimized format, one item per input file, in input order:
  {"image": uint8 size×size×3, "ok": 1 or 0, "reason": str}. litdata's `StreamingDataset` reads it
  from this folder, or from object storage when the folder is copied there (`input_dir="s3://..."`).
- `rows.parquet`: row → key, source_file, status ("ok" | "skipped"), reason (why a file was skipped).
- `COMPLETE`: written last, holding a fingerprint of the inputs; another fingerprint (files added,
  changed or removed) rebuilds the store.

A build writes into a private `.<size>px.building-<pid>` folder and is renamed into place only when
complete, so a build killed half-way (even by SIGKILL, whose litdata workers may live on for a while)
never touches the store; the next build removes such folders once their process is gone.

A corrupt, truncated, missing or non-image file never stops a build: it is stored as a blank image
with ok = 0, its reason is recorded, and it is counted (`ImageStore.skipped`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import random
import shutil
import signal
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from filelock import FileLock
from PIL import Image

from memegap.utils.io import write_text_atomic

log = logging.getLogger(__name__)

COMPLETE = "COMPLETE"
ROWS = "rows.parquet"
ROWS_SCHEMA = pa.schema([("key", pa.string()), ("source_file", pa.string()), ("status", pa.string()), ("reason", pa.string())])


def decode_rgb(path: str | Path, size: int) -> np.ndarray:
    """An image file as uint8 size×size×3: transparency composited on white, resized (bicubic)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)  # a bomb is a bad file, not a warning
        with Image.open(path) as image:
            rgba = image.convert("RGBA")
    canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    rgb = Image.alpha_composite(canvas, rgba).convert("RGB").resize((size, size), Image.Resampling.BICUBIC)
    return np.array(rgb, dtype=np.uint8)  # a writable copy (torch.from_numpy warns on read-only arrays)


@contextmanager
def ctrl_c_stops_the_workers() -> Iterator[None]:
    """Ctrl-C during litdata.optimize raises KeyboardInterrupt after stopping the worker processes.

    litdata installs its own SIGINT handler there, which ends the process with os._exit(0): exit status
    0, nothing printed, the run state left at "running" and the workers still packing for seconds. Its
    attempt to install one is refused here, so Python's KeyboardInterrupt comes through; the workers
    are then terminated and the half-built folder stays an unfinished build (never taken for a store)."""
    install = signal.signal

    def keep_sigint(signum, handler):
        return signal.getsignal(signum) if signum == signal.SIGINT else install(signum, handler)

    signal.signal = keep_sigint
    try:
        yield
    except KeyboardInterrupt:
        for worker in multiprocessing.active_children():
            worker.terminate()
        for worker in multiprocessing.active_children():
            worker.join(5)
        raise
    finally:
        signal.signal = install


def _pack(job: tuple[str, int]) -> dict:
    """litdata's per-item function: one file -> one item (a blank image with its reason when it fails)."""
    path, size = job
    try:
        return {"image": decode_rgb(path, size), "ok": 1, "reason": ""}
    except Exception as error:  # Pillow and the OS raise many types for a bad file
        return {"image": np.full((size, size, 3), 255, dtype=np.uint8), "ok": 0, "reason": f"{type(error).__name__}: {error}"[:300]}


def fingerprint(files: Sequence[tuple[str, Path]], size: int) -> str:
    """sha256 over (key, path, bytes, mtime) of every input and the size: changes when an input does."""
    digest = hashlib.sha256(f"size={size}".encode())
    for key, path in files:
        stat = Path(path).stat() if Path(path).exists() else None
        digest.update(f"\n{key}\t{path}\t{stat.st_size if stat else -1}\t{stat.st_mtime_ns if stat else -1}".encode())
    return digest.hexdigest()


def table_store_name(source: str, table: str | Path) -> str:
    """The store folder of the images a table names: the source, the table's file name and a short hash
    of its full path, so two tables of the same name never share a store."""
    digest = hashlib.sha1(str(Path(table).resolve()).encode()).hexdigest()[:8]
    return f"{source}-{Path(table).stem}-{digest}"


@contextmanager
def random_state_kept() -> Iterator[None]:
    """Restore Python's, NumPy's and torch's random state on the way out: building a store (litdata)
    draws from all three, and a run's first attempt, which builds it, must train like every later one."""
    states = random.getstate(), np.random.get_state(), torch.random.get_rng_state()
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.random.set_rng_state(states[2])


class ImageStore:
    """The store of one source at one image size, under `root`."""

    def __init__(self, root: str | Path, source: str, size: int, chunk_bytes: str = "64MB") -> None:
        self.dir = Path(root) / source / f"{size}px"
        self.size, self.chunk_bytes = size, chunk_bytes

    def is_complete(self, files: Sequence[tuple[str, Path]]) -> bool:
        marker = self.dir / COMPLETE
        return marker.exists() and json.loads(marker.read_text()).get("fingerprint") == fingerprint(files, self.size)

    def ensure(self, files: Sequence[tuple[str, Path]], num_workers: int = 1) -> ImageStore:
        """Build the store from (key, file) pairs unless a complete one of the same inputs exists.
        Safe to call from several processes at once (a file lock; the first builds, the others wait)."""
        self.dir.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.dir) + ".lock"):
            if not self.is_complete(files):
                with random_state_kept():
                    self._build(files, num_workers)
        return self

    def _remove_abandoned_builds(self) -> None:
        """Delete the build folders of processes that are gone (killed during a build)."""
        for folder in self.dir.parent.glob(f".{self.dir.name}.building-*"):
            pid = int(folder.name.rsplit("-", 1)[1])
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                shutil.rmtree(folder, ignore_errors=True)
            except PermissionError:  # alive, another user's
                pass

    def _build(self, files: Sequence[tuple[str, Path]], num_workers: int) -> None:
        import litdata

        self._remove_abandoned_builds()
        building = self.dir.with_name(f".{self.dir.name}.building-{os.getpid()}")
        shutil.rmtree(building, ignore_errors=True)
        log.info("packing %d images of %s at %d px into %s (once)", len(files), self.dir.parent.name, self.size, self.dir)
        with ctrl_c_stops_the_workers():
            litdata.optimize(
                fn=_pack,
                inputs=[(str(path), self.size) for _, path in files],
                output_dir=str(building),
                chunk_bytes=self.chunk_bytes,
                num_workers=num_workers,
                keep_data_ordered=True,
                verbose=False,
            )
        dataset = litdata.StreamingDataset(str(building))
        rows = []
        for index, (key, path) in enumerate(files):
            item = dataset[index]
            rows.append({"key": key, "source_file": str(path), "status": "ok" if item["ok"] else "skipped", "reason": item["reason"] or None})
        pq.write_table(pa.Table.from_pylist(rows, schema=ROWS_SCHEMA), building / ROWS)
        skipped = [row for row in rows if row["status"] == "skipped"]
        write_text_atomic(building / COMPLETE, json.dumps({"fingerprint": fingerprint(files, self.size), "rows": len(rows), "skipped": len(skipped)}) + "\n")
        if self.dir.exists():  # an older store of other inputs
            shutil.rmtree(self.dir)
        os.replace(building, self.dir)
        if skipped:
            log.warning("%d of %d images could not be read and were skipped (reasons in %s)", len(skipped), len(rows), self.dir / ROWS)

    def rows(self) -> list[dict]:
        return pq.read_table(self.dir / ROWS).to_pylist()

    @property
    def skipped(self) -> int:
        return sum(row["status"] == "skipped" for row in self.rows())

    def dataset(self):
        """litdata's StreamingDataset over the store: item i is row i of rows.parquet."""
        import litdata

        return litdata.StreamingDataset(str(self.dir))

    def load(self, keys: Sequence[str]) -> torch.Tensor:
        """The images of `keys` (all with status ok) as one uint8 tensor N×3×size×size, in memory."""
        row_of = {row["key"]: index for index, row in enumerate(self.rows())}
        dataset = self.dataset()
        images = [torch.from_numpy(np.array(dataset[row_of[key]]["image"])) for key in keys]
        return torch.stack(images).permute(0, 3, 1, 2).contiguous() if images else torch.empty(0, 3, self.size, self.size, dtype=torch.uint8)
