"""X/Twitter miner: memes and their likes (tweepy, API v2), linked to their templates and sources.

The memes table (`<out_dir>/memes.parquet`) is what the meme-popularity models train on. One row per
meme tweet, keyed by `id`:

| column        | type                | meaning                                                        |
|---------------|---------------------|----------------------------------------------------------------|
| id            | string              | tweet id                                                       |
| account       | string              | the account that posted the meme (e.g. ShitpostBot5000)        |
| created_at    | timestamp (UTC)     | when the meme was posted                                       |
| likes         | int64               | like count at `collected_at`                                   |
| retweets      | int64               | retweet count at `collected_at`                                |
| replies       | int64               | reply count at `collected_at`                                  |
| text          | string              | tweet text                                                     |
| image_url     | string              | URL of the first attached photo (null when none)               |
| image_path    | string              | the downloaded file (`memegap-collect download`), relative to the table's folder, else null |
| download_status | string            | ok / rejected / failed / no_url, set by `memegap-collect download` |
| template_url  | string              | the template image, from the context account's linked tweet    |
| source_urls   | list<string>        | the source images, from the context account's linked tweet     |
| collected_at  | timestamp (UTC)     | when the counts were last read                                 |

A context tweet (e.g. from @ShitpostContext) is linked to its meme through the tweet it replies to or
quotes, else its conversation id; its first photo is the template and the others are the sources.
Context links are kept in `<out_dir>/context.parquet` and applied to the memes table after each run,
so a context tweet seen before its meme is not lost. Columns a user adds to memes.parquet are kept
when the miner rewrites it.

Incremental and resumable: `<out_dir>/checkpoints/<account>.json` holds the newest id of the last
complete crawl and, during a crawl, the next pagination token (saved after every page, each page's
rows being written first). A re-run fetches only newer tweets, refreshes the counts of the known
ones (GET /2/tweets in batches of 100), and never duplicates an id.

The bearer token is read from an environment variable only; it is never written to a log, a file,
a config or an error message (tweepy's DEBUG log prints request headers, so its logger is kept at INFO).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import requests
import tweepy
from requests.adapters import HTTPAdapter
from rich.progress import Progress

from memegap.utils.tables import read_rows, schema_with_extra_columns, write_rows
from memegap.errors import UserError
from memegap.utils.io import remove_stale_temporaries, write_text_atomic

log = logging.getLogger(__name__)

TOKEN_ENV = "X_BEARER_TOKEN"
X_API_HOST = "https://api.twitter.com"
MEMES_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("account", pa.string()),
        ("created_at", pa.timestamp("us", tz="UTC")),
        ("likes", pa.int64()),
        ("retweets", pa.int64()),
        ("replies", pa.int64()),
        ("text", pa.string()),
        ("image_url", pa.string()),
        ("image_path", pa.string()),
        ("download_status", pa.string()),
        ("template_url", pa.string()),
        ("source_urls", pa.list_(pa.string())),
        ("collected_at", pa.timestamp("us", tz="UTC")),
    ]
)
CONTEXT_SCHEMA = pa.schema([("context_id", pa.string()), ("meme_id", pa.string()), ("template_url", pa.string()), ("source_urls", pa.list_(pa.string()))])
TWEET_FIELDS = ["created_at", "public_metrics", "text", "conversation_id", "referenced_tweets"]


class _RedirectHost(HTTPAdapter):
    """Sends requests for the X API host to another base URL (a mirror, a proxy, a test server)."""

    def __init__(self, base_url: str) -> None:
        super().__init__()
        self.base_url = base_url.rstrip("/")

    def send(self, request, **kwargs):
        request.url = self.base_url + request.url[len(X_API_HOST) :]
        return super().send(request, **kwargs)


@dataclass(frozen=True)
class MinerSettings:
    page_size: int = 100  # tweets per timeline request (the API allows 5..100)
    max_attempts: int = 6  # per request, for 5xx and connection errors
    backoff: float = 2.0  # seconds; attempt k waits backoff · 2^(k−1)
    max_rate_limit_wait: float = 15 * 60  # seconds; a longer announced wait raises instead


class TwitterMiner:
    """Mines meme accounts and a context account into `<out_dir>/memes.parquet`."""

    def __init__(self, out_dir: str | Path, token_env: str = TOKEN_ENV, api_base_url: str | None = None, settings: MinerSettings | None = None) -> None:
        token = os.environ.get(token_env)
        if not token:
            raise UserError(f"no X API bearer token: set the environment variable {token_env}")
        self.out_dir = Path(out_dir)
        self.token_env = token_env
        self.settings = settings or MinerSettings()
        self.client = tweepy.Client(bearer_token=token, wait_on_rate_limit=False)
        if api_base_url:
            self.client.session.mount(X_API_HOST, _RedirectHost(api_base_url))
        tweepy_log = logging.getLogger("tweepy")
        tweepy_log.setLevel(max(logging.INFO, tweepy_log.getEffectiveLevel()))
        self.memes_path = self.out_dir / "memes.parquet"
        self.context_path = self.out_dir / "context.parquet"
        for path in (self.memes_path, self.context_path):
            remove_stale_temporaries(path)  # left by a run killed while it saved the table
        self.memes_schema = schema_with_extra_columns(MEMES_SCHEMA, self.memes_path)
        self.memes = {row["id"]: row for row in read_rows(self.memes_path)}
        self.context = {row["context_id"]: row for row in read_rows(self.context_path)}
        self.progress: Progress | None = None

    # -- requests with rate-limit waits and retries ------------------------------------------------
    def _call(self, method: Callable[..., tweepy.Response], **params: Any) -> tweepy.Response:
        for attempt in range(1, self.settings.max_attempts + 1):
            try:
                return method(**params)
            except tweepy.TooManyRequests as error:
                reset = float(error.response.headers.get("x-rate-limit-reset", time.time() + 60))
                wait = max(0.0, reset - time.time()) + 1.0
                if wait > self.settings.max_rate_limit_wait:
                    raise UserError(f"X API rate limit: next window in {wait:.0f} s, over max_rate_limit_wait; run again later to resume") from None
                self._wait(wait, "rate limited")
            except (tweepy.Unauthorized, tweepy.Forbidden) as error:  # no retry can fix these
                raise UserError(
                    f"the X API refused the request (HTTP {error.response.status_code}): check the bearer token in "
                    f"{self.token_env} and its access level"
                ) from None
            except (tweepy.BadRequest, tweepy.NotFound) as error:
                raise UserError(f"the X API rejected the request (HTTP {error.response.status_code}): {'; '.join(error.api_messages) or error}") from None
            except (tweepy.TwitterServerError, requests.ConnectionError, requests.Timeout) as error:
                if attempt == self.settings.max_attempts:
                    raise UserError(f"X API unavailable after {attempt} attempts ({type(error).__name__}); run again later to resume") from None
                self._wait(self.settings.backoff * 2 ** (attempt - 1), f"server error {type(error).__name__}")
        raise UserError(f"X API still rate limited after {self.settings.max_attempts} waits; run again later to resume")

    def _wait(self, seconds: float, reason: str) -> None:
        log.info("%s: waiting %.1f s", reason, seconds)
        if self.progress is None:
            time.sleep(seconds)
            return
        task = self.progress.add_task(f"{reason}: waiting", total=seconds)
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(0.2, left))
            self.progress.update(task, completed=seconds - max(0.0, left))
        self.progress.remove_task(task)

    # -- checkpoints and tables ----------------------------------------------------------------------
    def _checkpoint_path(self, account: str) -> Path:
        return self.out_dir / "checkpoints" / f"{account}.json"

    def _load_checkpoint(self, account: str) -> dict[str, Any]:
        path = self._checkpoint_path(account)
        remove_stale_temporaries(path)
        return json.loads(path.read_text()) if path.exists() else {}

    def _save_checkpoint(self, account: str, checkpoint: dict[str, Any]) -> None:
        write_text_atomic(self._checkpoint_path(account), json.dumps(checkpoint, indent=2, sort_keys=True) + "\n")

    def _save_tables(self) -> None:
        write_rows(self.memes_path, sorted(self.memes.values(), key=lambda r: int(r["id"])), self.memes_schema)
        write_rows(self.context_path, sorted(self.context.values(), key=lambda r: int(r["context_id"])), CONTEXT_SCHEMA)

    # -- crawling --------------------------------------------------------------------------------------
    def _crawl(self, account: str, handle_page: Callable[[tweepy.Response, datetime], None]) -> int:
        """Page through `account`'s timeline from the checkpoint on; returns the number of tweets read."""
        checkpoint = self._load_checkpoint(account)
        if "user_id" not in checkpoint:
            user = self._call(self.client.get_user, username=account).data
            if user is None:
                raise UserError(f"no X account @{account} (check --accounts / --context-account)")
            checkpoint["user_id"] = str(user.id)
        read = 0
        task = self.progress.add_task(f"@{account}", total=None) if self.progress else None
        while True:
            response = self._call(
                self.client.get_users_tweets,
                id=checkpoint["user_id"],
                max_results=self.settings.page_size,
                since_id=checkpoint.get("newest_id"),
                pagination_token=checkpoint.get("pagination_token"),
                tweet_fields=TWEET_FIELDS,
                expansions=["attachments.media_keys"],
                media_fields=["url", "type"],
            )
            handle_page(response, datetime.now(timezone.utc))
            self._save_tables()
            tweets = response.data or []
            read += len(tweets)
            if task is not None:
                self.progress.update(task, advance=len(tweets), description=f"@{account}: {read} tweets")
            if tweets:
                newest = max(int(t.id) for t in tweets)
                checkpoint["crawl_newest_id"] = str(max(newest, int(checkpoint.get("crawl_newest_id", 0))))
            next_token = (response.meta or {}).get("next_token")
            if next_token:
                checkpoint["pagination_token"] = next_token
                self._save_checkpoint(account, checkpoint)
                continue
            if "crawl_newest_id" in checkpoint:
                checkpoint["newest_id"] = str(max(int(checkpoint.pop("crawl_newest_id")), int(checkpoint.get("newest_id", 0))))
            checkpoint.pop("pagination_token", None)
            self._save_checkpoint(account, checkpoint)
            return read

    @staticmethod
    def _photos(response: tweepy.Response) -> dict[str, str]:
        media = (response.includes or {}).get("media", [])
        return {m.media_key: m.url for m in media if m.type == "photo" and m.url}

    def _meme_page(self, account: str) -> Callable[[tweepy.Response, datetime], None]:
        def handle(response: tweepy.Response, now: datetime) -> None:
            photos = self._photos(response)
            for tweet in response.data or []:
                keys = (tweet.attachments or {}).get("media_keys", [])
                urls = [photos[k] for k in keys if k in photos]
                row = self.memes.get(str(tweet.id)) or {"image_path": None, "template_url": None, "source_urls": None}
                metrics = tweet.public_metrics or {}
                row |= {
                    "id": str(tweet.id),
                    "account": account,
                    "created_at": tweet.created_at,
                    "likes": metrics.get("like_count", 0),
                    "retweets": metrics.get("retweet_count", 0),
                    "replies": metrics.get("reply_count", 0),
                    "text": tweet.text,
                    "image_url": urls[0] if urls else None,
                    "collected_at": now,
                }
                self.memes[row["id"]] = row

        return handle

    def _context_page(self, response: tweepy.Response, now: datetime) -> None:
        photos = self._photos(response)
        for tweet in response.data or []:
            referenced = [r.id for r in (tweet.referenced_tweets or []) if r.type in ("replied_to", "quoted")]
            meme_id = referenced[0] if referenced else tweet.conversation_id
            urls = [photos[k] for k in (tweet.attachments or {}).get("media_keys", []) if k in photos]
            if meme_id is None or int(meme_id) == int(tweet.id) or not urls:
                continue
            self.context[str(tweet.id)] = {"context_id": str(tweet.id), "meme_id": str(meme_id), "template_url": urls[0], "source_urls": urls[1:]}

    def refresh_counts(self, account: str) -> int:
        """Re-read like/retweet/reply counts of the known memes of `account`; returns how many were updated."""
        ids = [meme_id for meme_id, row in self.memes.items() if row["account"] == account]
        updated = 0
        for start in range(0, len(ids), 100):
            response = self._call(self.client.get_tweets, ids=ids[start : start + 100], tweet_fields=["public_metrics"])
            now = datetime.now(timezone.utc)
            for tweet in response.data or []:
                metrics = tweet.public_metrics or {}
                self.memes[str(tweet.id)] |= {
                    "likes": metrics.get("like_count", 0),
                    "retweets": metrics.get("retweet_count", 0),
                    "replies": metrics.get("reply_count", 0),
                    "collected_at": now,
                }
                updated += 1
        self._save_tables()
        return updated

    def link_context(self) -> int:
        """Copy template and source URLs from the context table onto the memes they belong to."""
        linked = 0
        for link in self.context.values():
            meme = self.memes.get(link["meme_id"])
            if meme is not None:
                meme["template_url"], meme["source_urls"] = link["template_url"], link["source_urls"]
                linked += 1
        self._save_tables()
        return linked

    def run(self, meme_accounts: list[str], context_account: str | None = None, show_progress: bool = True) -> dict[str, int]:
        """Mine every meme account (new tweets, then refreshed counts) and the context account; link them."""
        summary: dict[str, int] = {}
        with Progress(disable=not show_progress) as self.progress:
            for account in meme_accounts:
                known_before = self._load_checkpoint(account).get("newest_id") is not None
                summary[f"{account}/new"] = self._crawl(account, self._meme_page(account))
                if known_before:
                    summary[f"{account}/refreshed"] = self.refresh_counts(account)
            if context_account:
                summary[f"{context_account}/new"] = self._crawl(context_account, self._context_page)
            summary["linked"] = self.link_context()
        self.progress = None
        summary["memes"] = len(self.memes)
        return summary
