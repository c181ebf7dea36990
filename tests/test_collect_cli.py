"""memegap-collect: --help, and `download --table` filling image_path of the memes table."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

from memegap.collect.cli import main
from memegap.collect.tables import read_rows, write_rows
from memegap.collect.twitter import MEMES_SCHEMA
from memegap.testing.faulty_images import faulty_image_server, good_png


def test_help_lists_the_commands():
    result = subprocess.run([sys.executable, "-m", "memegap.collect.cli", "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    for command in ("twitter", "download", "arasaac"):
        assert command in result.stdout


def test_download_table_fills_image_path(tmp_path, capsys):
    now = datetime(2024, 1, 1, tzinfo=timezone.utc)
    with faulty_image_server(fault_rate=0.0) as server:
        urls = [f"{server.url}/good/1.png", f"{server.url}/html/2", None]
        memes = [
            {"id": str(i), "account": "a", "created_at": now, "likes": i, "retweets": 0, "replies": 0, "text": "t",
             "image_url": url, "image_path": None, "template_url": None, "source_urls": None, "collected_at": now}
            for i, url in enumerate(urls)
        ]
        table = tmp_path / "memes.parquet"
        write_rows(table, memes, MEMES_SCHEMA)
        main(["download", "--table", str(table), "--workers", "2"])
    assert '"ok": 1' in capsys.readouterr().out
    rows = read_rows(table)
    assert Path(rows[0]["image_path"]).read_bytes() == good_png(1)
    assert rows[1]["image_path"] is None and rows[2]["image_path"] is None  # rejected, and no URL
    assert [row["likes"] for row in rows] == [0, 1, 2]  # nothing else changed
