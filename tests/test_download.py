"""The downloader against a loopback server that injects faults (memegap.testing.faulty_images)."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from memegap.collect.download import DownloadSettings, Downloader, file_stem
from memegap.utils.tables import read_rows
from memegap.testing.faulty_images import faulty_image_server, good_png

# Short time-outs so that a stall (1.5 s) exceeds the read time-out (0.5 s); small limits for the bad files.
FAST = DownloadSettings(workers=8, connect_timeout=2.0, read_timeout=0.5, max_attempts=10, backoff=0.05, max_bytes=1_000_000, max_pixels=40_000_000)
BAD_KINDS = ("html", "huge", "corrupt", "bomb")


def urls_for(base: str, good: int, bad_each: int) -> tuple[list[str], list[str]]:
    good_urls = [f"{base}/good/{k}.png" for k in range(good)]
    bad_urls = [f"{base}/{kind}/{k}" + ("" if kind == "html" else ".png") for kind in BAD_KINDS for k in range(bad_each)]
    return good_urls, bad_urls


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_every_good_file_arrives_intact_and_no_bad_file_is_kept(tmp_path):
    with faulty_image_server(fault_rate=0.3, seed=1) as server:
        good, bad = urls_for(server.url, good=80, bad_each=3)
        rows = Downloader(tmp_path, FAST).fetch_all(good + bad, show_progress=False)
        faults = server.httpd.app.faults_served
    assert all(count > 0 for count in faults.values()), faults  # every kind of fault really happened
    by_url = {row["url"]: row for row in rows}
    for k, url in enumerate(good):
        row = by_url[url]
        assert row["status"] == "ok", row
        assert (tmp_path / row["path"]).read_bytes() == good_png(k)  # relative to the manifest
        assert row["sha256"] == sha256(good_png(k)) and row["bytes"] == len(good_png(k))
    for url in bad:
        assert by_url[url]["status"] == "rejected" and by_url[url]["path"] is None, by_url[url]
    reasons = " ".join(by_url[url]["error"] for url in bad)
    for expected in ("content type 'text/html'", "max_bytes", "not a valid image", "pixels is over the limit"):
        assert expected in reasons
    kept = sorted(p.name for p in tmp_path.iterdir() if p.name != "manifest.parquet")
    assert kept == sorted(by_url[url]["path"] for url in good)  # no .part, no rejected file
    assert read_rows(tmp_path / "manifest.parquet") == sorted(rows, key=lambda r: r["url"])


def test_a_rerun_skips_what_is_done(tmp_path):
    with faulty_image_server(fault_rate=0.0) as server:
        good, bad = urls_for(server.url, good=10, bad_each=1)
        Downloader(tmp_path, FAST).fetch_all(good + bad, show_progress=False)
        served = server.httpd.app.requests
        rows = Downloader(tmp_path, FAST).fetch_all(good + bad, show_progress=False)
        assert server.httpd.app.requests == served  # nothing fetched again, rejected ones included
    assert sum(row["status"] == "ok" for row in rows) == 10


def test_a_changed_file_is_fetched_again(tmp_path):
    with faulty_image_server(fault_rate=0.0) as server:
        url = f"{server.url}/good/3.png"
        (row,) = Downloader(tmp_path, FAST).fetch_all([url], show_progress=False)
        (tmp_path / row["path"]).write_bytes(b"tampered")
        (row,) = Downloader(tmp_path, FAST).fetch_all([url], show_progress=False)
    assert (tmp_path / row["path"]).read_bytes() == good_png(3)


def test_a_partial_file_is_resumed_with_a_range_request(tmp_path):
    with faulty_image_server(fault_rate=0.0) as server:
        url = f"{server.url}/good/5.png"
        (tmp_path / f".{file_stem(url)}.part").write_bytes(good_png(5)[:40])
        (row,) = Downloader(tmp_path, FAST).fetch_all([url], show_progress=False)
        assert server.httpd.app.range_requests == 1
    assert row["status"] == "ok" and (tmp_path / row["path"]).read_bytes() == good_png(5)


def test_file_names_never_come_from_the_url_path(tmp_path):
    with faulty_image_server(fault_rate=0.0) as server:
        url = f"{server.url}/good/7.png?name=../../escape.png"
        (row,) = Downloader(tmp_path / "out", FAST).fetch_all([url], show_progress=False)
    assert row["status"] == "rejected" or (tmp_path / "out" / row["path"]).resolve().parent == (tmp_path / "out").resolve()
    assert not (tmp_path / "escape.png").exists()


def test_unreachable_host_is_recorded_as_failed_and_retried_next_run(tmp_path):
    settings = DownloadSettings(workers=1, connect_timeout=0.2, read_timeout=0.2, max_attempts=2, backoff=0.01)
    url = "http://127.0.0.1:9/nothing.png"  # the discard port: nothing listens there
    (row,) = Downloader(tmp_path, settings).fetch_all([url], show_progress=False)
    assert row["status"] == "failed" and "ConnectionError" in row["error"] and row["attempts"] == 2
    assert not Downloader(tmp_path, settings)._is_done(url)


def test_a_server_that_stays_down_is_asked_a_bounded_number_of_times(tmp_path):
    # urllib3 retries the 503 max_attempts times; our loop must not retry those retries again.
    settings = DownloadSettings(workers=1, max_attempts=3, backoff=0.01)
    with faulty_image_server(fault_rate=0.0) as server:
        (row,) = Downloader(tmp_path, settings).fetch_all([f"{server.url}/down/1.png"], show_progress=False)
        assert server.httpd.app.requests == 1 + 3
    assert row["status"] == "failed" and "HTTP 503 after 3 retries" in row["error"]


def test_a_new_downloader_removes_manifest_temporaries_left_by_a_killed_run(tmp_path):
    # A SIGKILL while the manifest is saved leaves atomic_path's temporary behind (seen once in CI).
    stale = tmp_path / ".manifest.parquet.k1ll3d00.parquet"
    stale.write_bytes(b"")
    image = tmp_path / "0123abcd.png"
    image.write_bytes(b"kept")
    Downloader(tmp_path, FAST)
    assert not stale.exists() and image.read_bytes() == b"kept"


DOWNLOAD_SCRIPT = """
import sys
from memegap.collect.download import DownloadSettings, Downloader
urls = open(sys.argv[2]).read().split()
settings = DownloadSettings(workers=2, read_timeout=0.5, max_attempts=10, backoff=0.05, max_bytes=1_000_000, manifest_flush_seconds=0.2)
Downloader(sys.argv[1], settings).fetch_all(urls, show_progress=False)
"""


def comparable(directory: Path) -> tuple[list, dict]:
    rows = [(r["url"], r["status"], r["sha256"], r["bytes"], Path(r["path"]).name if r["path"] else None) for r in read_rows(directory / "manifest.parquet")]
    files = {p.name: p.read_bytes() for p in directory.iterdir() if p.name != "manifest.parquet"}
    return sorted(rows), files


@pytest.mark.slow
def test_sigkill_mid_way_then_rerun_gives_the_same_result(tmp_path):
    with faulty_image_server(fault_rate=0.3, seed=2) as server:
        good, bad = urls_for(server.url, good=120, bad_each=2)
        url_file = tmp_path / "urls.txt"
        url_file.write_text("\n".join(good + bad))
        killed_dir, clean_dir = tmp_path / "killed", tmp_path / "clean"
        process = subprocess.Popen([sys.executable, "-c", DOWNLOAD_SCRIPT, str(killed_dir), str(url_file)])
        deadline = time.monotonic() + 300  # generous: a loaded machine starts Python slowly
        while time.monotonic() < deadline and len([p for p in killed_dir.glob("*.png")]) < 20:
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        done_before_rerun = len(list(killed_dir.glob("*.png")))
        assert 20 <= done_before_rerun < len(good), "the kill must land mid-way"
        Downloader(killed_dir, FAST).fetch_all(good + bad, show_progress=False)
        Downloader(clean_dir, FAST).fetch_all(good + bad, show_progress=False)
    assert comparable(killed_dir) == comparable(clean_dir)


@pytest.mark.slow
def test_ctrl_c_stops_at_once_saves_the_manifest_and_a_rerun_completes(tmp_path):
    with faulty_image_server(fault_rate=0.0, latency=0.02) as server:
        good = [f"{server.url}/good/{k}.png" for k in range(400)]
        url_file = tmp_path / "urls.txt"
        url_file.write_text("\n".join(good))
        out = tmp_path / "images"
        command = [sys.executable, "-m", "memegap.collect.cli", "download", "--urls", str(url_file), "--out", str(out), "--workers", "4"]
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 300  # generous: a loaded machine starts Python slowly
        while time.monotonic() < deadline and len(list(out.glob("*.png"))) < 20:
            time.sleep(0.05)
        pressed = time.monotonic()
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
        assert time.monotonic() - pressed < 10  # only the downloads in flight are finished
        assert process.returncode == 130 and "run the same command again to resume" in err and "Traceback" not in err
        files = {p.name for p in out.glob("*.png")}
        assert 20 <= len(files) < len(good), "the interrupt must land mid-way"
        assert {row["path"] for row in read_rows(out / "manifest.parquet")} == files  # every finished file is recorded
        rerun = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0 and '"ok": 400' in rerun.stdout
