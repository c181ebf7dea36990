"""memegap-collect as a user meets it: help, `download --table` on the user's own table, and the one-line
errors for paths, columns, URLs, tokens, accounts and servers that can never work."""

from __future__ import annotations

import argparse
import os
import socket
import stat
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from memegap.collect.cli import build_parser, main
from memegap.collect.download import DownloadSettings, Downloader
from memegap.utils.tables import read_rows, line_ending, read_user_columns, resolve_path, update_user_table, write_rows
from memegap.collect.twitter import MEMES_SCHEMA, MinerSettings, TwitterMiner
from memegap.errors import UserError
from memegap.testing.faulty_images import faulty_image_server, good_png
from memegap.testing.x_api import FakeTweet, fake_x_api


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    """Run memegap-collect in this process; returns (exit status, stdout, stderr)."""
    try:
        main(args)
        status = 0
    except SystemExit as exit_:
        status = exit_.code if isinstance(exit_.code, int) else 1
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def assert_one_line_error(status: int, err: str, *needles: str) -> None:
    assert status == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("memegap-collect: error:"), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.mark.slow
def test_help_lists_the_commands():
    result = subprocess.run([sys.executable, "-m", "memegap.collect.cli", "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    for command in ("twitter", "download", "arasaac"):
        assert command in result.stdout


@pytest.mark.parametrize("command", ["twitter", "download", "arasaac"])
@pytest.mark.slow
def test_every_option_has_a_help_text_and_the_help_shows_defaults(command):
    subparsers = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    parser = subparsers.choices[command]
    for action in parser._actions:
        assert action.help, f"{command} {action.option_strings} has no help text"
    shown = subprocess.run([sys.executable, "-m", "memegap.collect.cli", command, "--help"], capture_output=True, text=True, timeout=60,
                           env={**os.environ, "COLUMNS": "200"}).stdout
    assert "(default: " in shown


def memes_table(urls: list[str | None]) -> list[dict]:
    now = datetime(2024, 1, 1, tzinfo=timezone.utc)
    return [
        {"id": str(i), "account": "a", "created_at": now, "likes": i, "retweets": 0, "replies": 0, "text": "t",
         "image_url": url, "image_path": None, "template_url": None, "source_urls": None, "collected_at": now}
        for i, url in enumerate(urls)
    ]


def test_download_table_fills_image_path_relative_to_the_table(tmp_path, capsys):
    with faulty_image_server(fault_rate=0.0) as server:
        table = tmp_path / "memes.parquet"
        write_rows(table, memes_table([f"{server.url}/good/1.png", f"{server.url}/html/2", None]), MEMES_SCHEMA)
        status, out, _ = run_cli(["download", "--table", str(table), "--workers", "2"], capsys)
    assert status == 0 and '"ok": 1' in out
    rows = read_rows(table)
    assert not Path(rows[0]["image_path"]).is_absolute()
    assert resolve_path(table, rows[0]["image_path"]).read_bytes() == good_png(1)
    assert rows[1]["image_path"] is None and rows[2]["image_path"] is None  # rejected, and no URL
    assert [row["download_status"] for row in rows] == ["ok", "rejected", "no_url"]
    assert [row["likes"] for row in rows] == [0, 1, 2]  # nothing else changed


def test_download_table_keeps_the_users_own_columns_rows_and_types(tmp_path, capsys):
    # A user's table: not the Twitter schema, with a `caption` column and an int32 column of its own.
    with faulty_image_server(fault_rate=0.0) as server:
        table = tmp_path / "mine.parquet"
        original = pa.table({
            "caption": ["a cat", "a dog", "no picture"],
            "score": pa.array([3, 1, 2], type=pa.int32()),
            "image_url": [f"{server.url}/good/1.png", f"{server.url}/good/2.png", None],
        }).replace_schema_metadata({"source": "my survey"})
        pq.write_table(original, table)
        status, _, _ = run_cli(["download", "--table", str(table)], capsys)
    assert status == 0
    updated = pq.read_table(table)
    for column in original.column_names:
        assert updated.column(column) == original.column(column), column
    assert updated.schema.metadata[b"source"] == b"my survey"
    assert updated.column_names == ["caption", "score", "image_url", "image_path", "download_status"]
    assert updated.column("download_status").to_pylist() == ["ok", "ok", "no_url"]


def test_download_table_keeps_a_csv_table_as_written(tmp_path, capsys):
    """Contents, types and the file's mode (a group-writable 664 stays 664, not mkstemp's 600)."""
    with faulty_image_server(fault_rate=0.0) as server:
        table = tmp_path / "posts.csv"
        table.write_text(f'caption,image_url,date\n"hello, world",{server.url}/good/3.png,2024-01-01\nlate,,0007\n')
        os.chmod(table, 0o664)
        status, _, _ = run_cli(["download", "--table", str(table)], capsys)
    assert status == 0
    assert stat.S_IMODE(table.stat().st_mode) == 0o664
    frame = pd.read_csv(table, dtype=str, keep_default_na=False)
    assert frame["caption"].tolist() == ["hello, world", "late"] and frame["date"].tolist() == ["2024-01-01", "0007"]
    assert resolve_path(table, frame["image_path"][0]).read_bytes() == good_png(3)
    assert stat.S_IMODE(resolve_path(table, frame["image_path"][0]).stat().st_mode) == 0o666 & ~current_umask()  # a new file: the umask's
    assert frame["download_status"].tolist() == ["ok", "no_url"]


def current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@pytest.mark.slow
def test_paths_in_table_and_manifest_stay_valid_from_another_folder(tmp_path):
    # Download with relative paths from one working directory, read from another.
    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    work.mkdir(), elsewhere.mkdir()
    with faulty_image_server(fault_rate=0.0) as server:
        urls = work / "urls.txt"
        urls.write_text(f"{server.url}/good/4.png\n")
        result = subprocess.run([sys.executable, "-m", "memegap.collect.cli", "download", "--urls", "urls.txt", "--out", "data/images"],
                                cwd=work, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    manifest = work / "data" / "images" / "manifest.parquet"
    os.chdir(elsewhere)
    try:
        (row,) = read_rows(manifest)
        assert resolve_path(manifest, row["path"]).read_bytes() == good_png(4)
        assert Downloader(work / "data" / "images").file_of(row).read_bytes() == good_png(4)
    finally:
        os.chdir(tmp_path)


def test_a_mistyped_table_path_is_an_error_and_creates_nothing(tmp_path, capsys):
    missing = tmp_path / "memse.parquet"
    status, out, err = run_cli(["download", "--table", str(missing)], capsys)
    assert_one_line_error(status, err, str(missing), "no such table")
    assert out == "" and list(tmp_path.iterdir()) == []


def test_a_table_without_image_url_names_the_column(tmp_path, capsys):
    table = tmp_path / "t.csv"
    table.write_text("caption,url\nx,http://127.0.0.1:9/a.png\n")
    status, _, err = run_cli(["download", "--table", str(table)], capsys)
    assert_one_line_error(status, err, "image_url", "caption, url")
    assert table.read_text() == "caption,url\nx,http://127.0.0.1:9/a.png\n"


def test_a_missing_urls_file_is_one_line_and_verbose_shows_the_traceback(tmp_path, capsys):
    status, _, err = run_cli(["download", "--urls", str(tmp_path / "nope.txt"), "--out", str(tmp_path / "out")], capsys)
    assert_one_line_error(status, err, "nope.txt", "no such file")
    assert not (tmp_path / "out").exists()
    with pytest.raises(UserError, match="nope.txt"):
        main(["--verbose", "download", "--urls", str(tmp_path / "nope.txt"), "--out", str(tmp_path / "out")])


def test_urls_that_can_never_work_are_rejected_at_once(tmp_path):
    settings = DownloadSettings(max_attempts=5, backoff=1.0)  # a retried URL would take 15 s of backoff
    rows = Downloader(tmp_path, settings).fetch_all(["ftp://host/a.png", "not a url", "http:///no-host.png"], show_progress=False)
    assert [row["status"] for row in rows] == ["rejected"] * 3
    assert [row["attempts"] for row in rows] == [0, 0, 0]  # never sent, so never retried
    assert all("not an http(s) URL" in row["error"] for row in rows)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_refused_server_is_retried_then_reported_as_failed(tmp_path):
    settings = DownloadSettings(max_attempts=3, backoff=0.01)
    (row,) = Downloader(tmp_path, settings).fetch_all([f"http://127.0.0.1:{closed_port()}/a.png"], show_progress=False)
    assert row["status"] == "failed" and row["attempts"] == 3 and "ConnectionError" in row["error"]


def test_arasaac_with_a_refused_api_is_retried_then_one_line(tmp_path, capsys):
    api = f"http://127.0.0.1:{closed_port()}/v1"
    status, _, err = run_cli(["arasaac", "--root", str(tmp_path), "--locales", "en", "--api-url", api, "--max-attempts", "2"], capsys)
    assert_one_line_error(status, err, "no answer after 2 attempts")


def test_arasaac_with_a_bad_api_url_fails_at_once(tmp_path, capsys):
    status, _, err = run_cli(["arasaac", "--root", str(tmp_path), "--api-url", "api.arasaac.org/v1"], capsys)
    assert_one_line_error(status, err, "--api-url", "not an http(s) URL")


def test_twitter_without_token_bad_token_and_unknown_account_are_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("X_BEARER_TOKEN", raising=False)
    status, _, err = run_cli(["twitter", "--out", str(tmp_path)], capsys)
    assert_one_line_error(status, err, "X_BEARER_TOKEN")
    users = {"ShitpostBot5000": 100}
    tweets = [FakeTweet(id=1, author="ShitpostBot5000", text="m", created_at="2024-01-01T00:00:00.000Z")]
    with fake_x_api(users, tweets, token="right") as server:
        monkeypatch.setenv("X_BEARER_TOKEN", "wrong")
        status, _, err = run_cli(["twitter", "--out", str(tmp_path), "--api-base-url", server.url, "--context-account", ""], capsys)
        assert_one_line_error(status, err, "HTTP 401", "X_BEARER_TOKEN")
        assert len(server.httpd.app.requests) == 1  # refused once, never retried
        monkeypatch.setenv("X_BEARER_TOKEN", "right")
        status, _, err = run_cli(["twitter", "--out", str(tmp_path), "--api-base-url", server.url, "--accounts", "NoSuchAccount", "--context-account", ""], capsys)
        assert_one_line_error(status, err, "@NoSuchAccount")


def test_the_miner_keeps_a_users_own_column_of_memes_parquet(tmp_path, monkeypatch):
    monkeypatch.setenv("X_BEARER_TOKEN", "t")
    users = {"ShitpostBot5000": 100}
    tweets = [FakeTweet(id=i, author="ShitpostBot5000", text=f"m{i}", created_at="2024-01-01T00:00:00.000Z", likes=i) for i in (1, 2)]
    settings = MinerSettings(page_size=5, max_attempts=2, backoff=0.01)
    with fake_x_api(users, tweets) as server:
        TwitterMiner(tmp_path, api_base_url=server.url, settings=settings).run(["ShitpostBot5000"], None, show_progress=False)
        table = tmp_path / "memes.parquet"
        annotated = pq.read_table(table)
        pq.write_table(annotated.append_column("funny", pa.array([True, False])), table)
        TwitterMiner(tmp_path, api_base_url=server.url, settings=settings).run(["ShitpostBot5000"], None, show_progress=False)
    rows = read_rows(tmp_path / "memes.parquet")
    assert [(row["id"], row["funny"]) for row in rows] == [("1", True), ("2", False)]


def test_the_real_sentiment_csv_keeps_every_row_column_and_its_line_endings(shared_data, tmp_path, capsys):
    # 15,613 rows, CR line endings, quoted fields with line breaks, the URLs in `imageurl`
    table = tmp_path / "sentiment.csv"
    table.write_bytes((shared_data / "image_sentiment" / "image-sentiment-polarity.csv").read_bytes())
    status, _, err = run_cli(["download", "--table", str(table)], capsys)
    assert_one_line_error(status, err, "no column image_url", "imageurl", "--url-column")
    original = pd.read_csv(table, dtype=str, keep_default_na=False)
    urls = read_user_columns(table, ("imageurl",))["imageurl"]
    update_user_table(table, {"image_path": [None] * len(urls), "download_status": ["failed"] * len(urls)})
    updated = pd.read_csv(table, dtype=str, keep_default_na=False)
    assert len(updated) == len(original) == 15_613
    pd.testing.assert_frame_equal(updated[list(original.columns)], original)
    assert line_ending(table) == "\r"  # the file's own line ending is kept


def test_download_refuses_a_read_only_table_and_says_where_the_images_went(tmp_path, capsys, caplog):
    with faulty_image_server(fault_rate=0.0) as server:
        table = tmp_path / "posts.csv"
        table.write_text(f"caption,image_url\nhello,{server.url}/good/3.png\n")
        original = table.read_bytes()
        os.chmod(table, 0o444)
        status, _, err = run_cli(["download", "--table", str(table)], capsys)
        assert_one_line_error(status, err, f"--table {table}: read-only", "nothing was downloaded")
        assert table.read_bytes() == original and not (tmp_path / "images").exists()
        os.chmod(table, 0o644)
        caplog.set_level("INFO", logger="memegap.collect.cli")
        status, out, err = run_cli(["download", "--table", str(table)], capsys)
    assert status == 0 and '"ok": 1' in out
    assert f"images in {tmp_path / 'images'}; {table} updated" in caplog.text  # the log line says where and what
