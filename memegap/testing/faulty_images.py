"""An image server that misbehaves the way real ones do, for the downloader's fault-injection tests.

Paths (k is any integer; bodies are deterministic in k):
  /good/k.png      a valid PNG; with probability `fault_rate` a request instead gets one transient
                   fault: 500, 429 with Retry-After, a truncated body, a stall past the client's read
                   time-out, or a 302 redirect to /canonical/good/k.png (which serves the same PNG)
  /html/k          text/html                          -> must be rejected
  /huge/k.png      an image/png body over the limit  -> must be rejected
  /corrupt/k.png   image/png bytes that are no image  -> must be rejected
  /bomb/k.png      a valid 1-bit PNG of 12,000 × 12,000 pixels (a decompression bomb) -> rejected
  /down/k.png      always 503 (a server that stays down)  -> failed, retried by the next run
Range requests (`bytes=N-`) are answered with 206.
"""

from __future__ import annotations

import io
import random
import re
import threading
import time
from functools import lru_cache

from PIL import Image

from memegap.testing.server import LoopbackServer, QuietHandler

FAULTS = ("500", "429", "truncate", "stall", "redirect")


@lru_cache(maxsize=None)
def good_png(k: int, size: int = 24) -> bytes:
    """A deterministic small PNG for index k."""
    rng = random.Random(k)
    image = Image.new("RGB", (size, size), (rng.randrange(256), rng.randrange(256), rng.randrange(256)))
    image.putpixel((k % size, (k // size) % size), (255 - k % 256, 0, 0))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@lru_cache(maxsize=1)
def bomb_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("1", (12_000, 12_000)).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


class FaultyImageApp:
    def __init__(self, fault_rate: float = 0.3, seed: int = 0, stall_seconds: float = 1.5, huge_bytes: int = 3_000_000, latency: float = 0.0) -> None:
        """latency: seconds each request waits before its answer (a network round trip)."""
        self.fault_rate, self.stall_seconds, self.huge_bytes, self.latency = fault_rate, stall_seconds, huge_bytes, latency
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.faults_served: dict[str, int] = {fault: 0 for fault in FAULTS}
        self.requests = 0
        self.range_requests = 0

    def draw_fault(self) -> str | None:
        with self.lock:
            self.requests += 1
            if self.rng.random() >= self.fault_rate:
                return None
            fault = self.rng.choice(FAULTS)
            self.faults_served[fault] += 1
            return fault


class FaultyImageHandler(QuietHandler):
    server_version = "FaultyImages/1.0"

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        app: FaultyImageApp = self.server.app
        match = re.fullmatch(r"/(canonical/)?(good|html|huge|corrupt|bomb|down)/(\d+)(\.png)?", self.path)
        if not match:
            self.send_error(404)
            return
        canonical, kind, k = match.group(1), match.group(2), int(match.group(3))
        if app.latency:
            time.sleep(app.latency)
        if kind == "down":
            with app.lock:
                app.requests += 1
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif kind == "html":
            self.send_body(b"<html><body>not an image</body></html>", "text/html; charset=utf-8")
        elif kind == "huge":
            self.send_body(b"\x89PNG" + bytes(app.huge_bytes), "image/png")
        elif kind == "corrupt":
            self.send_body(random.Random(k).randbytes(2000), "image/png")
        elif kind == "bomb":
            self.send_body(bomb_png(), "image/png")
        else:
            fault = app.draw_fault()
            if fault == "redirect" and not canonical:
                self.send_response(302)
                self.send_header("Location", f"/canonical/good/{k}.png")
                self.send_header("Content-Length", "0")
                self.end_headers()
            elif fault in ("500", "429"):
                self.send_response(int(fault))
                if fault == "429":
                    self.send_header("Retry-After", "1")
                self.send_header("Content-Length", "0")
                self.end_headers()
            else:
                self.send_body(good_png(k), "image/png", fault)

    def send_body(self, body: bytes, content_type: str, fault: str | None = None) -> None:
        app: FaultyImageApp = self.server.app
        start = 0
        ranged = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
        if ranged and int(ranged.group(1)) < len(body):
            start = int(ranged.group(1))
            with app.lock:
                app.range_requests += 1
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        part = body[start:]
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(part)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if fault in ("truncate", "stall") and len(part) > 1:
            self.wfile.write(part[: len(part) // 2])
            self.wfile.flush()
            if fault == "stall":
                time.sleep(app.stall_seconds)
            self.close_connection = True
            return
        self.wfile.write(part)


def faulty_image_server(**kwargs) -> LoopbackServer:
    """`with faulty_image_server(fault_rate=0.3) as server:` -> server.url, server.httpd.app.faults_served."""
    return LoopbackServer(FaultyImageHandler, FaultyImageApp(**kwargs))
