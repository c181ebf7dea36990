"""Robust image downloader used by every data source.

- requests Session with urllib3 Retry for 429 and 5xx answers (honouring Retry-After), connect and
  read time-outs, and our own retry loop with exponential backoff for what urllib3 cannot retry:
  connection errors and failures mid-body (a truncated body, a stall), resumed with Range. Each
  failure is retried by one of the two, never both;
- streams to `<dir>/.<name>.part` and renames to the final name only when complete and verified; a
  partial file is resumed with an HTTP Range request where the server answers 206;
- rejects (and records) non-image content types, bodies over `max_bytes`, images Pillow cannot verify
  and images over `max_pixels` (decompression bombs); rejected files are deleted;
- file names are a hash of the URL, or a caller-given id (letters, digits, `_`, `-` only), never
  taken from the URL path;
- a URL that can never succeed (no http(s) scheme or host) is rejected at once, not retried;
- a manifest table (parquet): url, path, status, bytes, sha256, error, attempts, timestamp; `path` is
  relative to the manifest's folder (`file_of(row)` gives the file). A re-run skips URLs already done
  (and re-verifies their files); a file under its final name is complete by construction, so an
  interrupted run (even SIGKILL) resumes to the same result; Ctrl-C stops after the downloads in
  flight and saves the manifest.

Status values: "ok", "rejected" (the server's answer is not an acceptable image; not retried),
"failed" (gave up after `max_attempts` transient errors; retried on the next run).
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlsplit

import pyarrow as pa
import requests
from PIL import Image
from requests.adapters import HTTPAdapter
from rich.progress import Progress
from urllib3.util.retry import Retry

from memegap.utils.tables import read_rows, relative_to_table, resolve_path, write_rows
from memegap.utils.io import remove_stale_temporaries

log = logging.getLogger(__name__)

MANIFEST_SCHEMA = pa.schema(
    [
        ("url", pa.string()),
        ("path", pa.string()),
        ("status", pa.string()),
        ("bytes", pa.int64()),
        ("sha256", pa.string()),
        ("error", pa.string()),
        ("attempts", pa.int32()),
        ("timestamp", pa.timestamp("us", tz="UTC")),
    ]
)
EXTENSIONS = {"image/jpeg": ".jpg", "image/png": ".png", "image/gif": ".gif", "image/webp": ".webp", "image/bmp": ".bmp"}
UNKNOWN_IMAGE_EXTENSION = ".img"
FINAL_EXTENSIONS = (*dict.fromkeys(EXTENSIONS.values()), UNKNOWN_IMAGE_EXTENSION)
CHUNK_BYTES = 64 * 1024
SAFE_NAME = re.compile(r"[A-Za-z0-9_-]{1,100}")


class Rejected(Exception):
    """The server's answer is not an acceptable image: recorded, deleted, not retried."""


class ServerGaveUp(Exception):
    """Still 429/5xx after the session's own status retries: recorded as failed, retried next run."""


@dataclass(frozen=True)
class DownloadSettings:
    workers: int = 8
    connect_timeout: float = 5.0  # seconds
    read_timeout: float = 20.0  # seconds without a byte
    max_attempts: int = 6
    backoff: float = 0.5  # seconds; attempt k waits backoff · 2^(k−1)
    max_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 40_000_000
    manifest_flush_seconds: float = 2.0


def file_stem(url: str) -> str:
    """32 hex digits of sha256(url): the file name, whatever the URL's path says."""
    return hashlib.sha256(url.encode("utf-8")).hexdigest()[:32]


def make_session(settings: DownloadSettings) -> requests.Session:
    retry = Retry(
        total=None,
        connect=0,  # connection errors and read errors mid-body are retried by Downloader.fetch
        read=0,
        status=settings.max_attempts,
        backoff_factor=settings.backoff,
        status_forcelist=(429, 500, 502, 503, 504),
        allowed_methods=("GET",),
        respect_retry_after_header=True,
        raise_on_status=False,
    )
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=retry, pool_connections=settings.workers, pool_maxsize=settings.workers)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def check_url(url: str) -> None:
    """Raise Rejected for a URL that no retry can fix: not http(s), or no host."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise Rejected(f"not an http(s) URL: {url!r}")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_image(path: Path, max_pixels: int) -> None:
    """Raise Rejected unless Pillow verifies the file and its width × height ≤ max_pixels."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit applies
            with Image.open(path) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise Rejected(f"image of {width}×{height} pixels is over the limit of {max_pixels}")
                image.verify()
    except Rejected:
        raise
    except Exception as error:  # Pillow raises many types for broken files
        raise Rejected(f"not a valid image: {type(error).__name__}: {error}") from None


class Downloader:
    """Downloads URLs into `out_dir`, recording each outcome in `<out_dir>/manifest.parquet`."""

    def __init__(self, out_dir: str | Path, settings: DownloadSettings | None = None, manifest_path: str | Path | None = None) -> None:
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.settings = settings or DownloadSettings()
        self.manifest_path = Path(manifest_path) if manifest_path else self.out_dir / "manifest.parquet"
        remove_stale_temporaries(self.manifest_path)  # left by a run killed while it saved the manifest
        self._local = threading.local()
        self._lock = threading.Lock()
        self._rows = {row["url"]: row for row in read_rows(self.manifest_path)}
        self._last_flush = time.monotonic()
        self._names: dict[str, str] = {}

    def _stem(self, url: str) -> str:
        return self._names.get(url) or file_stem(url)

    def _session(self) -> requests.Session:
        if not hasattr(self._local, "session"):
            self._local.session = make_session(self.settings)
        return self._local.session

    def file_of(self, row: dict) -> Path | None:
        """The downloaded file of a manifest row (None unless its status is ok)."""
        return resolve_path(self.manifest_path, row["path"]) if row["status"] == "ok" and row["path"] else None

    def _is_done(self, url: str) -> bool:
        row = self._rows.get(url)
        if row is None:
            return False
        if row["status"] == "rejected":
            return True
        path = self.file_of(row)
        return path is not None and path.exists() and sha256_of(path) == row["sha256"]

    def _existing_final_file(self, url: str) -> Path | None:
        """The URL's file under its final name, if present (a stat per known extension, no folder scan)."""
        for extension in FINAL_EXTENSIONS:
            path = self.out_dir / (self._stem(url) + extension)
            if path.exists():
                return path
        return None

    def _record(self, url: str, path: Path | None, status: str, error: str | None, attempts: int) -> dict:
        ok = status == "ok" and path is not None
        row = {
            "url": url,
            "path": relative_to_table(path, self.manifest_path) if ok else None,
            "status": status,
            "bytes": path.stat().st_size if ok else None,
            "sha256": sha256_of(path) if ok else None,
            "error": error,
            "attempts": attempts,
            "timestamp": datetime.now(timezone.utc),
        }
        with self._lock:
            self._rows[url] = row
            if time.monotonic() - self._last_flush > self.settings.manifest_flush_seconds:
                self._flush_locked()
        return row

    def _flush_locked(self) -> None:
        write_rows(self.manifest_path, sorted(self._rows.values(), key=lambda r: r["url"]), MANIFEST_SCHEMA)
        self._last_flush = time.monotonic()

    def _transfer(self, url: str, part: Path) -> str:
        """One attempt: stream `url` into `part` (resuming it if present). Returns the content type."""
        settings = self.settings
        have = part.stat().st_size if part.exists() else 0
        headers = {"Range": f"bytes={have}-"} if have else {}
        with self._session().get(url, headers=headers, stream=True, timeout=(settings.connect_timeout, settings.read_timeout)) as response:
            if response.status_code == 429 or response.status_code >= 500:
                raise ServerGaveUp(f"HTTP {response.status_code} after {settings.max_attempts} retries")
            if response.status_code == 416:  # our partial file is already whole, or stale
                part.unlink(missing_ok=True)
                raise requests.HTTPError("HTTP 416 for a resumed range; restarting", response=response)
            if response.status_code >= 400:
                raise Rejected(f"HTTP {response.status_code}")
            content_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
            if not content_type.startswith("image/"):
                raise Rejected(f"content type {content_type or 'missing'!r} is not an image")
            resumed = response.status_code == 206
            declared = int(response.headers.get("Content-Length", 0) or 0) + (have if resumed else 0)
            if declared > settings.max_bytes:
                raise Rejected(f"body of {declared} bytes is over max_bytes={settings.max_bytes}")
            written = have if resumed else 0
            with part.open("ab" if resumed else "wb") as handle:
                for chunk in response.iter_content(CHUNK_BYTES):
                    written += len(chunk)
                    if written > settings.max_bytes:
                        raise Rejected(f"body is over max_bytes={settings.max_bytes}")
                    handle.write(chunk)
            return content_type

    def fetch(self, url: str) -> dict:
        """Download one URL (or confirm it is done); returns its manifest row."""
        if self._is_done(url):
            return self._rows[url]
        existing = self._existing_final_file(url)
        if existing is not None:
            known = self._rows.get(url)
            # verified and renamed by a run that died before writing its manifest, or recorded under
            # another path (a manifest from an older version): keep it
            if known is None or known["sha256"] == sha256_of(existing):
                return self._record(url, existing, "ok", None, 0)
            existing.unlink()  # differs from the sha256 in the manifest: fetch it again
        try:
            check_url(url)
        except Rejected as rejected:
            return self._record(url, None, "rejected", str(rejected), 0)
        part = self.out_dir / f".{self._stem(url)}.part"
        error = None
        for attempt in range(1, self.settings.max_attempts + 1):
            try:
                content_type = self._transfer(url, part)
                verify_image(part, self.settings.max_pixels)
                final = self.out_dir / (self._stem(url) + EXTENSIONS.get(content_type, UNKNOWN_IMAGE_EXTENSION))
                part.replace(final)
                return self._record(url, final, "ok", None, attempt)
            except Rejected as rejected:
                part.unlink(missing_ok=True)
                return self._record(url, None, "rejected", str(rejected), attempt)
            except ServerGaveUp as gave_up:
                return self._record(url, None, "failed", str(gave_up), attempt)
            except (requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema, requests.exceptions.MissingSchema) as invalid:
                part.unlink(missing_ok=True)  # no retry can fix the URL itself
                return self._record(url, None, "rejected", f"invalid URL: {invalid}", attempt)
            except (requests.RequestException, OSError) as transient:
                error = f"{type(transient).__name__}: {transient}"
                time.sleep(self.settings.backoff * 2 ** (attempt - 1))
        return self._record(url, None, "failed", error, self.settings.max_attempts)

    def fetch_all(self, urls: list[str], show_progress: bool = True, names: dict[str, str] | None = None) -> list[dict]:
        """Download every URL with `workers` threads; returns the manifest rows of `urls` in order.

        names: optional url -> file name without extension (e.g. a pictogram id) instead of the URL hash.
        """
        for url, name in (names or {}).items():
            if not SAFE_NAME.fullmatch(name):
                raise ValueError(f"file name {name!r} for {url} may only hold letters, digits, '_' and '-'")
        self._names = dict(names or {})
        unique = list(dict.fromkeys(urls))
        try:
            with Progress(disable=not show_progress, transient=True) as progress, ThreadPoolExecutor(max_workers=self.settings.workers) as pool:
                task = progress.add_task("downloading", total=len(unique))
                futures = [pool.submit(self.fetch, url) for url in unique]
                try:
                    for future in as_completed(futures):
                        future.result()
                        progress.advance(task)
                except BaseException:  # Ctrl-C or an error: finish only the downloads in flight
                    for future in futures:
                        future.cancel()
                    raise
        finally:  # after the pool has drained, so the downloads that were in flight are recorded too
            with self._lock:
                self._flush_locked()
        return [self._rows[url] for url in urls]
