"""Downloader throughput against the loopback image server: files/s and MB/s with 1, 4 and 16 workers
for 10,000 small files, and the ratio against a plain sequential `requests.get` loop that writes each
file. The server runs in its own process (no shared GIL with the client).

Measured at each `--latency-ms` (the server waits that long before answering, as a network round trip
would): at 0 ms both sides are CPU-bound on one machine and the ratio shows the downloader's own cost
(verification, hashing, manifest); at 10 ms it shows what the worker threads buy on a real network.
Prints one JSON document.
    python benchmarks/download.py [--files 10000] [--workers 1 4 16] [--latency-ms 0 10]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import tempfile
import time
from pathlib import Path

import requests

from memegap.collect.download import DownloadSettings, Downloader, file_stem


def serve(port_queue, stop_event, latency: float) -> None:
    from memegap.testing.faulty_images import faulty_image_server

    with faulty_image_server(fault_rate=0.0, latency=latency) as server:
        port_queue.put(server.url)
        stop_event.wait()


def plain_loop(urls: list[str], out: Path) -> float:
    start = time.perf_counter()
    for url in urls:
        response = requests.get(url, timeout=10)
        response.raise_for_status()
        (out / (file_stem(url) + ".png")).write_bytes(response.content)
    return time.perf_counter() - start


def downloader(urls: list[str], out: Path, workers: int) -> float:
    start = time.perf_counter()
    rows = Downloader(out, DownloadSettings(workers=workers)).fetch_all(urls, show_progress=False)
    seconds = time.perf_counter() - start
    assert all(row["status"] == "ok" for row in rows)
    return seconds


def measure(files: int, workers_list: list[int], latency_ms: float) -> dict:
    context = multiprocessing.get_context("spawn")
    port_queue, stop_event = context.Queue(), context.Event()
    server = context.Process(target=serve, args=(port_queue, stop_event, latency_ms / 1000), daemon=True)
    server.start()
    base = port_queue.get(timeout=60)
    try:
        urls = [f"{base}/good/{k}.png" for k in range(files)]
        with tempfile.TemporaryDirectory() as scratch:
            plain_dir = Path(scratch) / "plain"
            plain_dir.mkdir()
            plain_seconds = plain_loop(urls, plain_dir)
            total_mb = sum(p.stat().st_size for p in plain_dir.iterdir()) / 1e6
            report = {
                "latency_ms": latency_ms,
                "megabytes": round(total_mb, 2),
                "plain_sequential_requests_get": {"seconds": round(plain_seconds, 2), "files_per_s": round(files / plain_seconds, 1), "mb_per_s": round(total_mb / plain_seconds, 3)},
                "downloader": {},
            }
            for workers in workers_list:
                seconds = downloader(urls, Path(scratch) / f"workers{workers}", workers)
                report["downloader"][str(workers)] = {
                    "seconds": round(seconds, 2),
                    "files_per_s": round(files / seconds, 1),
                    "mb_per_s": round(total_mb / seconds, 3),
                    "speedup_vs_plain_loop": round(plain_seconds / seconds, 2),
                }
            return report
    finally:
        stop_event.set()
        server.join(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--latency-ms", type=float, nargs="+", default=[0.0, 10.0])
    args = parser.parse_args()
    runs = [measure(args.files, args.workers, latency) for latency in args.latency_ms]
    print(json.dumps({"files": args.files, "runs": runs}, indent=2))


if __name__ == "__main__":
    main()
