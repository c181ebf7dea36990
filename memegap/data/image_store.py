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

import contextlib
import hashlib
import io
import json
import logging
import multiprocessing
import os
import random
import shutil
import signal
import sys
import time
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

from memegap.errors import UserError
from memegap.utils.cli import usable_cores
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
def workers_do_not_import_the_caller() -> Iterator[None]:
    """litdata starts its workers by spawn, and a spawned process re-runs the top level of the script
    that started Python (`python my_script.py`) unless it is under `if __name__ == "__main__":`. A script
    that sets up a data module at its top level then set one up again in each worker, which waited for
    ever on the store lock its parent holds (a silent hang). Here the workers are not told the script's
    path while they start (what multiprocessing.spawn reads to re-import it): they import memegap only.
    A run started with `python -m module` is left as it is (its module is imported, not run)."""
    main = sys.modules.get("__main__")
    path = vars(main).get("__file__") if main is not None and getattr(main, "__spec__", None) is None else None
    if path is not None:
        del main.__file__
    try:
        yield
    finally:
        if path is not None:
            main.__file__ = path


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


def pack_table_images(source: str, table: str | Path, files: Sequence[Path], size: int, store_dir: str | Path,
                      workers: int | None) -> tuple[ImageStore, set[str], int]:
    """The store of the image files a user's table names (its own store: table_store_name), built when
    needed. Returns it, the keys (the files' paths as text) it could read, and how many files it could not;
    those are named once in a warning with an example and where the list is."""
    store = ImageStore(store_dir, table_store_name(source, table), size).ensure([(str(path), path) for path in files], workers)
    entries = store.rows()
    readable = {entry["key"] for entry in entries if entry["status"] == "ok"}
    unreadable = [entry for entry in entries if entry["status"] != "ok"]
    if unreadable:
        log.warning("%d of %d images of %s are missing or unreadable and left out, e.g. %s (%s); all in %s/rows.parquet", len(unreadable),
                    len(files), table, unreadable[0]["source_file"], unreadable[0]["reason"], store.location)
    return store, readable, len(unreadable)


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


MAX_DEFAULT_STORE_WORKERS = 4


def default_store_workers() -> int:
    """The store build's worker processes when data.store_workers is unset: this process's cores, at most 4."""
    return max(1, min(MAX_DEFAULT_STORE_WORKERS, usable_cores()))


def is_url(location: str | Path) -> bool:
    """Whether a store location is on object storage (`s3://bucket/prefix`), not a local folder."""
    return "://" in str(location)


def storage_options() -> dict:
    """litdata's and boto3's options for object storage: the endpoint of an S3-compatible server from
    AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL (none: AWS itself); credentials and region come from the
    environment as boto3 reads them (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION, ...)."""
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    return {"endpoint_url": endpoint} if endpoint else {}


def read_object(url: str) -> bytes | None:
    """The bytes of one object `s3://bucket/key`, or None when there is none."""
    import boto3
    from botocore.exceptions import ClientError

    if not url.startswith("s3://"):
        raise UserError(f"{url}: only s3:// object storage is supported for image stores")
    bucket, _, key = url[len("s3://"):].partition("/")
    try:
        return boto3.client("s3", **storage_options()).get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return None
        raise UserError(f"{url}: {error}") from None


class ImageStore:
    """The store of one source at one image size, under `root`: a local folder, where it is built, or a
    URL on object storage (`s3://bucket/prefix`) where a built store was copied, read as it is there."""

    def __init__(self, root: str | Path, source: str, size: int, chunk_bytes: str = "64MB") -> None:
        self.remote = is_url(root)
        self.location = f"{str(root).rstrip('/')}/{source}/{size}px" if self.remote else str(Path(root) / source / f"{size}px")
        self.dir = None if self.remote else Path(self.location)
        self.size, self.chunk_bytes = size, chunk_bytes
        self._remote_rows: list[dict] | None = None

    def is_complete(self, files: Sequence[tuple[str, Path]]) -> bool:
        marker = self.dir / COMPLETE
        return marker.exists() and json.loads(marker.read_text()).get("fingerprint") == fingerprint(files, self.size)

    def ensure(self, files: Sequence[tuple[str, Path]], workers: int | None = None) -> ImageStore:
        """Build the store from (key, file) pairs unless a complete one of the same inputs exists.
        Safe to call from several processes at once (a file lock; the first builds, the others wait).
        workers: litdata worker processes for the build (data.store_workers; None: the cores this process
        may use, at most MAX_DEFAULT_STORE_WORKERS). Decoding is the cost: 118k COCO JPEGs take one
        process tens of minutes."""
        if getattr(multiprocessing.current_process(), "_inheriting", False):  # a process being spawned re-runs its parent's script
            raise UserError("an image store was asked for while Python was starting a worker process and re-running the script "
                            "that started it: put the code that sets up the data module under `if __name__ == \"__main__\":`")
        if self.remote:
            return self._ensure_remote()
        if not files:
            raise UserError(f"{self.dir}: no images to pack: the source lists none (an empty table or folder); check data.* paths")
        self.dir.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.dir) + ".lock"):
            if not self.is_complete(files):
                with random_state_kept():
                    self._build(files, workers or default_store_workers())
        return self

    def _ensure_remote(self) -> ImageStore:
        """A store on object storage is read as it was built: it must be complete (its COMPLETE marker);
        its inputs are not compared with this machine's files, which may not be here at all."""
        if read_object(f"{self.location}/{COMPLETE}") is None:
            raise UserError(f"{self.location}: no complete image store there (no {COMPLETE} marker). Build it on a local "
                            f"folder (data.store_dir=<folder>) and copy <folder>/{Path(self.location).parent.name}/{self.size}px there")
        log.info("reading the image store at %s as it is there (its inputs are not compared with this machine's files)", self.location)
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
        log.info("packing %d images of %s at %d px into %s (once; %d worker process%s, data.store_workers)", len(files),
                 self.dir.parent.name, self.size, self.dir, num_workers, "" if num_workers == 1 else "es")
        started = time.perf_counter()
        # litdata's progress bar (tqdm, on stderr) shows during the build on a terminal (in a log it is a line a
        # refresh); its printed set-up lines (stdout) never do
        with ctrl_c_stops_the_workers(), workers_do_not_import_the_caller(), contextlib.redirect_stdout(io.StringIO()):
            litdata.optimize(
                fn=_pack,
                inputs=[(str(path), self.size) for _, path in files],
                output_dir=str(building),
                chunk_bytes=self.chunk_bytes,
                num_workers=num_workers,
                keep_data_ordered=True,
                verbose=sys.stderr.isatty(),
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
        seconds = time.perf_counter() - started
        log.info("packed %d images in %.1f s (%.0f images/s)", len(files), seconds, len(files) / max(seconds, 1e-9))
        if skipped:
            log.warning("%d of %d images could not be read and were skipped (reasons in %s)", len(skipped), len(rows), self.dir / ROWS)

    def rows(self) -> list[dict]:
        if not self.remote:
            return pq.read_table(self.dir / ROWS).to_pylist()
        if self._remote_rows is None:
            self._remote_rows = pq.read_table(pa.BufferReader(read_object(f"{self.location}/{ROWS}"))).to_pylist()
        return self._remote_rows

    @property
    def skipped(self) -> int:
        return sum(row["status"] == "skipped" for row in self.rows())

    def dataset(self):
        """litdata's StreamingDataset over the store: item i is row i of rows.parquet."""
        import litdata

        return litdata.StreamingDataset(self.location, storage_options=storage_options() if self.remote else None)

    def view(self, keys: Sequence[str]) -> StoredImages:
        """The images of `keys` (all with status ok), read from the chunks when indexed, not held in memory."""
        row_of = {row["key"]: index for index, row in enumerate(self.rows())}
        return StoredImages(self.location, [row_of[key] for key in keys], self.size)


class ChunkReader:
    """Reads the image of any row of a local store straight from its litdata chunk files with os.pread:
    one system call and one copy per image, nothing mapped or cached, so a process's memory stays flat
    however many images it reads (page-cache pages are the kernel's, not the process's).

    The byte layout is litdata's PyTreeLoader chunk (its item_loader.py): uint32 item count, uint32
    offsets[count + 1], then per item uint32 sizes of its fields ("image", "ok", "reason") and the
    fields; "image" is a NumpySerializer array: uint32 dtype, uint32 ndim, uint32 shape[ndim], bytes.
    `ChunkReader.of(store_dir, size)` returns None when a store is not laid out so (another litdata
    format, compression, a remote store): StoredImages then reads through litdata's StreamingDataset.
    """

    FIELDS = 3  # image, ok, reason

    def __init__(self, files: list[str], starts: np.ndarray, offsets: list[np.ndarray], size: int) -> None:
        self.files, self.starts, self.offsets, self.size = files, starts, offsets, size
        self.image_bytes = size * size * 3
        self.header_bytes = 4 * self.FIELDS + 4 * 2 + 4 * 3  # field sizes, then dtype, ndim and the 3 dims of the image
        self._handles: dict[int, int] = {}

    @classmethod
    def of(cls, store_dir: str | Path, size: int) -> ChunkReader | None:
        index_path = Path(store_dir) / "index.json"
        if is_url(store_dir) or not index_path.exists():
            return None
        index = json.loads(index_path.read_text())
        config = index.get("config", {})
        if config.get("item_loader") != "PyTreeLoader" or config.get("compression") or config.get("encryption") \
                or config.get("data_format") != ["numpy", "int", "str"]:
            return None
        files, offsets, starts = [], [], [0]
        for chunk in index["chunks"]:
            path = str(Path(store_dir) / chunk["filename"])
            with open(path, "rb") as handle:
                count = int(np.frombuffer(handle.read(4), np.uint32)[0])
                table = np.frombuffer(handle.read(4 * (count + 1)), np.uint32).astype(np.int64)
            files.append(path)
            offsets.append(table[:-1])
            starts.append(starts[-1] + count)
        reader = cls(files, np.array(starts), offsets, size)
        return reader if reader._header_is_as_expected() else None

    def _header_is_as_expected(self) -> bool:
        if not self.files or len(self.offsets[0]) == 0:
            return False
        header = np.frombuffer(os.pread(self._handle(0), self.header_bytes, int(self.offsets[0][0])), np.uint32)
        return int(header[0]) == 4 * 5 + self.image_bytes and int(header[4]) == 3 and tuple(int(d) for d in header[5:8]) == (self.size, self.size, 3)

    def _handle(self, chunk: int) -> int:
        if chunk not in self._handles:
            self._handles[chunk] = os.open(self.files[chunk], os.O_RDONLY)
        return self._handles[chunk]

    def image(self, row: int) -> np.ndarray:
        """uint8 size×size×3 of store row `row`."""
        chunk = int(np.searchsorted(self.starts, row, side="right")) - 1
        begin = int(self.offsets[chunk][row - self.starts[chunk]]) + self.header_bytes
        data = bytearray(self.image_bytes)
        if os.preadv(self._handle(chunk), [data], begin) != self.image_bytes:
            raise OSError(f"{self.files[chunk]}: cut short at row {row} (rebuild the store: delete {Path(self.files[chunk]).parent})")
        return np.frombuffer(data, np.uint8).reshape(self.size, self.size, 3)

    def close(self) -> None:
        for handle in self._handles.values():
            os.close(handle)
        self._handles.clear()


class StoredImages:
    """Some rows of a store as a sequence of uint8 images 3×S×S, read from its chunks when indexed: a
    process holds the row numbers (8 bytes an image), not the images, so memory does not grow with N,
    and under DDP each rank (each loader worker) reads only the rows its sampler gives it.

    images[i] -> uint8 3×S×S; images[a:b] or images[[i, j, ...]] -> uint8 n×3×S×S (those rows only);
    images.subset(rows) -> another StoredImages. Each process opens its own reader (a ChunkReader for
    a local store, else litdata's StreamingDataset); readers are not pickled into DataLoader workers.
    """

    def __init__(self, store_dir: str | Path, rows: Sequence[int], size: int) -> None:
        self.store_dir, self.rows, self.size = str(store_dir), np.asarray(rows, dtype=np.int64), size
        self._reader = None

    def __len__(self) -> int:
        return len(self.rows)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_reader": None}

    def _image(self, row: int) -> torch.Tensor:
        if self._reader is None:
            self._reader = ChunkReader.of(self.store_dir, self.size) or _LitdataReader(self.store_dir)
        return torch.from_numpy(self._reader.image(int(row))).permute(2, 0, 1).contiguous()

    def __getitem__(self, index) -> torch.Tensor:
        if isinstance(index, (int, np.integer)) or (isinstance(index, torch.Tensor) and index.ndim == 0):
            return self._image(self.rows[int(index)])
        rows = self.rows[index] if isinstance(index, slice) else self.rows[np.asarray(index, dtype=np.int64)]
        if len(rows) == 0:
            return torch.empty(0, 3, self.size, self.size, dtype=torch.uint8)
        return torch.stack([self._image(row) for row in rows])

    def __iter__(self) -> Iterator[torch.Tensor]:
        return (self._image(row) for row in self.rows)

    def subset(self, positions: Sequence[int]) -> StoredImages:
        """The images at these positions of this view (positions, not store rows)."""
        return StoredImages(self.store_dir, self.rows[np.asarray(positions, dtype=np.int64)], self.size)


class _LitdataReader:
    """Images of a store through litdata's StreamingDataset (any litdata format; a store on object storage)."""

    def __init__(self, store_dir: str) -> None:
        import litdata

        self.dataset = litdata.StreamingDataset(store_dir, storage_options=storage_options() if is_url(store_dir) else None)

    def image(self, row: int) -> np.ndarray:
        return np.asarray(self.dataset[row]["image"])
