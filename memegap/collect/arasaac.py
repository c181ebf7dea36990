"""ARASAAC pictograms: the full list per locale and the PNGs, resumable, with a manifest.

Writes `<root>/<locale>.json` (the API's records: `_id`, `keywords[].keyword`, `tags`, `categories`, …),
`<root>/png/<_id>.png` at the chosen resolution and `<root>/manifest.parquet` (the downloader's).
A record without an integer `_id` is skipped and counted. ARASAAC pictograms are CC BY-NC-SA
(Gobierno de Aragón, author Sergio Palao): keep the attribution in anything derived.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import requests

from memegap.collect.download import DownloadSettings, Downloader, Rejected, check_url, make_session
from memegap.errors import UserError
from memegap.utils.io import write_text_atomic

log = logging.getLogger(__name__)

API_URL = "https://api.arasaac.org/v1"
STATIC_URL = "https://static.arasaac.org"
RESOLUTIONS = (300, 500, 2500)


def pictogram_url(static_url: str, pictogram_id: int, resolution: int) -> str:
    return f"{static_url.rstrip('/')}/pictograms/{pictogram_id}/{pictogram_id}_{resolution}.png"


def fetch_list(locale: str, root: Path, api_url: str, settings: DownloadSettings, refresh: bool = False) -> list[dict[str, Any]]:
    """The locale's pictogram records, from `<root>/<locale>.json` if present (unless refresh), else the API."""
    path = root / f"{locale}.json"
    if path.exists() and not refresh:
        return json.loads(path.read_text(encoding="utf-8"))
    url = f"{api_url.rstrip('/')}/pictograms/all/{locale}"
    try:
        check_url(url)
    except Rejected as rejected:
        raise UserError(f"--api-url {api_url}: {rejected}") from None
    records = get_json(url, settings)
    if not isinstance(records, list):
        raise UserError(f"{url} answered {type(records).__name__}, expected a JSON list of pictograms (is --api-url right?)")
    write_text_atomic(path, json.dumps(records, ensure_ascii=False))
    return records


def get_json(url: str, settings: DownloadSettings) -> Any:
    """GET a JSON document: 429/5xx retried by the session, connection errors and time-outs by this loop
    (backoff · 2^(k−1)); an answer no retry can fix (4xx, not JSON) fails at once, naming the URL."""
    with make_session(settings) as session:
        for attempt in range(1, settings.max_attempts + 1):
            try:
                response = session.get(url, timeout=(settings.connect_timeout, max(settings.read_timeout, 120.0)))
                break
            except (requests.ConnectionError, requests.Timeout) as error:
                if attempt == settings.max_attempts:
                    raise UserError(f"{url}: no answer after {attempt} attempts ({type(error).__name__}); run again later to resume") from None
                log.info("%s: %s, retrying", url, type(error).__name__)
                time.sleep(settings.backoff * 2 ** (attempt - 1))
    if response.status_code >= 400:
        raise UserError(f"{url} answered HTTP {response.status_code}")
    try:
        return response.json()
    except ValueError:
        raise UserError(f"{url} did not answer JSON (content type {response.headers.get('Content-Type')!r})") from None


def fetch_arasaac(
    root: str | Path,
    locales: tuple[str, ...] = ("es", "en"),
    resolution: int = 300,
    api_url: str = API_URL,
    static_url: str = STATIC_URL,
    settings: DownloadSettings | None = None,
    refresh_lists: bool = False,
    show_progress: bool = True,
) -> dict[str, int]:
    """Fetch the lists of `locales` and every pictogram's PNG; returns counts (records, skipped, files…)."""
    if resolution not in RESOLUTIONS:
        raise UserError(f"resolution must be one of {RESOLUTIONS}, got {resolution}")
    try:
        check_url(pictogram_url(static_url, 1, resolution))
    except Rejected as rejected:
        raise UserError(f"--static-url {static_url}: {rejected}") from None
    root = Path(root)
    settings = settings or DownloadSettings()
    ids: set[int] = set()
    summary: dict[str, int] = {}
    for locale in locales:
        records = fetch_list(locale, root, api_url, settings, refresh_lists)
        good = [r for r in records if isinstance(r, dict) and isinstance(r.get("_id"), int)]
        summary[f"{locale}/records"], summary[f"{locale}/skipped"] = len(good), len(records) - len(good)
        if len(good) < len(records):
            log.warning("%s: skipped %d record(s) without an integer _id", locale, len(records) - len(good))
        ids.update(r["_id"] for r in good)
    urls = {pictogram_url(static_url, i, resolution): str(i) for i in sorted(ids)}
    rows = Downloader(root / "png", settings, manifest_path=root / "manifest.parquet").fetch_all(list(urls), show_progress, names=urls)
    for status in ("ok", "rejected", "failed"):
        summary[f"png/{status}"] = sum(row["status"] == status for row in rows)
    return summary
