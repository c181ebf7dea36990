"""The X/Twitter miner against a loopback X API v2 (memegap.testing.x_api) speaking the real JSON."""

from __future__ import annotations

import logging
from datetime import datetime, timezone

import pytest

from memegap.utils.tables import read_rows
from memegap.collect.twitter import MinerSettings, TwitterMiner
from memegap.errors import UserError
from memegap.testing.x_api import FakeTweet, fake_x_api

TOKEN = "AAAA-secret-bearer-token-1234567890"
USERS = {"ShitpostBot5000": 100, "ShitpostContext": 200}
FAST = MinerSettings(page_size=3, max_attempts=4, backoff=0.05)


def meme(i: int, likes: int) -> FakeTweet:
    return FakeTweet(id=1000 + i, author="ShitpostBot5000", text=f"meme {i}", created_at=f"2024-01-0{1 + i % 9}T12:00:00.000Z",
                     likes=likes, retweets=i, replies=2 * i, media_urls=[f"https://pbs.example/meme{i}.jpg"])


def context(i: int, meme_id: int, reply: bool = True) -> FakeTweet:
    return FakeTweet(id=5000 + i, author="ShitpostContext", text=f"context {i}", created_at="2024-02-01T00:00:00.000Z",
                     media_urls=[f"https://pbs.example/template{i}.jpg", f"https://pbs.example/source{i}a.jpg", f"https://pbs.example/source{i}b.jpg"],
                     replied_to=meme_id if reply else None, conversation_id=meme_id)


@pytest.fixture
def token(monkeypatch):
    monkeypatch.setenv("X_BEARER_TOKEN", TOKEN)
    return TOKEN


def mine(out_dir, server) -> dict:
    return TwitterMiner(out_dir, api_base_url=server.url, settings=FAST).run(["ShitpostBot5000"], "ShitpostContext", show_progress=False)


def test_mines_pages_links_context_and_survives_429_and_503(tmp_path, token, caplog):
    caplog.set_level(logging.DEBUG)  # even at DEBUG the token must not reach a log
    tweets = [meme(i, likes=10 * i) for i in range(7)] + [context(0, 1000), context(1, 1003, reply=False)]
    with fake_x_api(USERS, tweets, page_size=3) as server:
        server.httpd.app.scripted_errors = [429, 503]
        summary = mine(tmp_path, server)
        requests = server.httpd.app.requests
    assert summary == {"ShitpostBot5000/new": 7, "ShitpostContext/new": 2, "linked": 2, "memes": 7}
    rows = {row["id"]: row for row in read_rows(tmp_path / "memes.parquet")}
    assert sorted(rows) == [str(1000 + i) for i in range(7)]
    row = rows["1003"]
    assert (row["likes"], row["retweets"], row["replies"], row["text"]) == (30, 3, 6, "meme 3")
    assert row["created_at"] == datetime(2024, 1, 4, 12, tzinfo=timezone.utc)
    assert row["image_url"] == "https://pbs.example/meme3.jpg" and row["image_path"] is None
    assert row["template_url"] == "https://pbs.example/template1.jpg"  # linked through the conversation id
    assert row["source_urls"] == ["https://pbs.example/source1a.jpg", "https://pbs.example/source1b.jpg"]
    assert rows["1000"]["template_url"] == "https://pbs.example/template0.jpg"  # linked as a reply
    assert rows["1001"]["template_url"] is None
    timeline_pages = [path for path, _ in requests if "/tweets?" in path and "/users/100/" in path]
    assert len(timeline_pages) == 3 + 2  # 7 tweets in pages of 3, plus the 429 and the 503 answered before
    assert all(headers["Authorization"] == f"Bearer {TOKEN}" for _, headers in requests)
    # the token is in no file the run wrote and in no log record
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path
    assert TOKEN not in caplog.text


def test_rerun_adds_only_new_tweets_and_updates_likes(tmp_path, token):
    tweets = [meme(i, likes=i) for i in range(5)]
    with fake_x_api(USERS, tweets) as server:
        mine(tmp_path, server)
        tweets[0].likes = 999  # an old meme got more likes
        tweets.extend([meme(5, likes=50), meme(6, likes=60)])
        server.httpd.app.requests.clear()
        summary = mine(tmp_path, server)
        since_ids = [path for path, _ in server.httpd.app.requests if "since_id=1004" in path]
    assert summary["ShitpostBot5000/new"] == 2 and summary["ShitpostBot5000/refreshed"] == 7
    assert since_ids, "the second run asks only for tweets newer than the newest seen"
    rows = read_rows(tmp_path / "memes.parquet")
    assert [row["id"] for row in rows] == [str(1000 + i) for i in range(7)]  # no duplicate id
    assert {row["id"]: row["likes"] for row in rows}["1000"] == 999


def test_interrupted_crawl_resumes_from_its_pagination_token(tmp_path, token):
    tweets = [meme(i, likes=i) for i in range(8)]
    with fake_x_api(USERS, tweets, page_size=3) as server:
        server.httpd.app.scripted_errors = [0, 503, 503, 503, 503]  # page 1 answered, then the API is down
        with pytest.raises(UserError, match="unavailable after 4 attempts"):
            mine(tmp_path, server)
        assert len(read_rows(tmp_path / "memes.parquet")) == 3  # the first page was kept
        checkpoint = (tmp_path / "checkpoints" / "ShitpostBot5000.json").read_text()
        assert '"pagination_token": "3"' in checkpoint
        summary = mine(tmp_path, server)
    assert summary["ShitpostBot5000/new"] == 5  # the remaining pages only
    assert [row["id"] for row in read_rows(tmp_path / "memes.parquet")] == [str(1000 + i) for i in range(8)]


def test_missing_token_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("X_BEARER_TOKEN", raising=False)
    with pytest.raises(UserError, match="X_BEARER_TOKEN"):
        TwitterMiner(tmp_path)
