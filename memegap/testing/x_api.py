"""A loopback X (Twitter) API v2 that answers the real JSON shapes, for the miner's tests.

Endpoints: GET /2/users/by/username/<name>, GET /2/users/<id>/tweets (max_results, pagination_token,
since_id; `includes.media` for attachments; `meta.next_token`), GET /2/tweets?ids=... (public_metrics).
`scripted_errors` is a list of HTTP statuses answered, in order, to the next timeline requests
(0 = answer normally; 429 carries `x-rate-limit-reset` one second ahead). Every request's path and headers are recorded.
With `token` set, any other bearer token is answered 401; an unknown username gets the API's 200 with
an `errors` list (no `data`), as the real API answers.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlparse

from memegap.testing.server import LoopbackServer, QuietHandler


@dataclass
class FakeTweet:
    id: int
    author: str
    text: str
    created_at: str  # ISO 8601, UTC
    likes: int = 0
    retweets: int = 0
    replies: int = 0
    media_urls: list[str] = field(default_factory=list)
    replied_to: int | None = None
    conversation_id: int | None = None

    def media_keys(self) -> list[str]:
        return [f"3_{self.id}_{i}" for i in range(len(self.media_urls))]

    def to_json(self, fields: set[str]) -> dict:
        body: dict = {"id": str(self.id), "text": self.text, "edit_history_tweet_ids": [str(self.id)]}
        if "created_at" in fields:
            body["created_at"] = self.created_at
        if "public_metrics" in fields:
            body["public_metrics"] = {"like_count": self.likes, "retweet_count": self.retweets, "reply_count": self.replies, "quote_count": 0}
        if "conversation_id" in fields:
            body["conversation_id"] = str(self.conversation_id or self.id)
        if "referenced_tweets" in fields and self.replied_to:
            body["referenced_tweets"] = [{"type": "replied_to", "id": str(self.replied_to)}]
        if self.media_urls:
            body["attachments"] = {"media_keys": self.media_keys()}
        return body


class FakeXApp:
    def __init__(self, users: dict[str, int], tweets: list[FakeTweet], page_size: int = 3, token: str | None = None) -> None:
        self.users = users  # username -> user id
        self.token = token
        self.tweets = tweets
        self.page_size = page_size
        self.scripted_errors: list[int] = []
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.lock = threading.Lock()

    def timeline(self, user_id: int, query: dict[str, str]) -> dict:
        author = next(name for name, uid in self.users.items() if uid == user_id)
        tweets = sorted((t for t in self.tweets if t.author == author), key=lambda t: -t.id)
        if "since_id" in query:
            tweets = [t for t in tweets if t.id > int(query["since_id"])]
        start = int(query.get("pagination_token", "0") or 0)
        size = min(self.page_size, int(query.get("max_results", self.page_size)))
        page = tweets[start : start + size]
        fields = set(query.get("tweet.fields", "").split(","))
        body: dict = {"meta": {"result_count": len(page)}}
        if page:
            body["data"] = [t.to_json(fields) for t in page]
            body["meta"] |= {"newest_id": str(page[0].id), "oldest_id": str(page[-1].id)}
            media = [{"media_key": key, "type": "photo", "url": url} for t in page for key, url in zip(t.media_keys(), t.media_urls)]
            if media and "attachments.media_keys" in query.get("expansions", ""):
                body["includes"] = {"media": media}
        if start + size < len(tweets):
            body["meta"]["next_token"] = str(start + size)
        return body


class FakeXHandler(QuietHandler):
    def do_GET(self) -> None:  # noqa: N802
        app: FakeXApp = self.server.app
        url = urlparse(self.path)
        query = {key: values[-1] for key, values in parse_qs(url.query).items()}
        with app.lock:
            app.requests.append((self.path, dict(self.headers)))
        authorization = self.headers.get("Authorization", "")
        if not authorization.startswith("Bearer ") or (app.token and authorization != f"Bearer {app.token}"):
            self.send_json(401, json.dumps({"title": "Unauthorized", "type": "about:blank", "status": 401, "detail": "Unauthorized"}).encode())
            return
        parts = url.path.strip("/").split("/")
        if parts[:4] == ["2", "users", "by", "username"]:
            name = parts[4]
            if name in app.users:
                body = {"data": {"id": str(app.users[name]), "name": name, "username": name}}
            else:
                body = {"errors": [{"value": name, "detail": f"Could not find user with username: [{name}].", "title": "Not Found Error",
                                    "resource_type": "user", "parameter": "username", "resource_id": name,
                                    "type": "https://api.twitter.com/2/problems/resource-not-found"}]}
        elif len(parts) == 4 and parts[:2] == ["2", "users"] and parts[3] == "tweets":
            with app.lock:
                error = app.scripted_errors.pop(0) if app.scripted_errors else None
            if error == 429:
                reset = str(int(time.time()) + 1)
                self.send_json(429, b'{"title":"Too Many Requests","status":429}', {"x-rate-limit-reset": reset, "x-rate-limit-remaining": "0"})
                return
            if error:
                self.send_json(error, json.dumps({"title": "Service Unavailable", "status": error}).encode())
                return
            body = app.timeline(int(parts[2]), query)
        elif parts == ["2", "tweets"]:
            wanted = {int(i) for i in query["ids"].split(",")}
            fields = set(query.get("tweet.fields", "").split(","))
            body = {"data": [t.to_json(fields) for t in app.tweets if t.id in wanted]}
        else:
            self.send_json(404, b'{"title":"Not Found"}')
            return
        self.send_json(200, json.dumps(body).encode())


def fake_x_api(users: dict[str, int], tweets: list[FakeTweet], page_size: int = 3, token: str | None = None) -> LoopbackServer:
    return LoopbackServer(FakeXHandler, FakeXApp(users, tweets, page_size, token))
