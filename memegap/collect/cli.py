"""memegap-collect: acquisition commands.

    memegap-collect twitter  --out data/memes                      # X_BEARER_TOKEN in the environment
    memegap-collect download --table data/memes/memes.parquet      # fills image_path, keeps every column
    memegap-collect download --urls urls.txt --out data/images
    memegap-collect arasaac  --root data/arasaac --locales es en --resolution 300

Every command can be interrupted (Ctrl-C, even a kill) and run again to resume. Expected errors end
in one line naming the file, column or server; --verbose shows the traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path


from memegap.collect.arasaac import API_URL, RESOLUTIONS, STATIC_URL, fetch_arasaac
from memegap.collect.download import DownloadSettings, Downloader
from memegap.utils.tables import read_user_columns, relative_to_table, update_user_table
from memegap.collect.twitter import TOKEN_ENV, MinerSettings, TwitterMiner
from memegap.errors import UserError, reported_as_one_line
from memegap.utils.cli import HelpFormatter, number_in

log = logging.getLogger(__name__)

PROGRAM = "memegap-collect"


def add_download_options(parser: argparse.ArgumentParser) -> None:
    defaults = DownloadSettings()
    parser.add_argument("--workers", type=number_in(1), default=defaults.workers, help="parallel downloads")
    parser.add_argument("--max-bytes", type=number_in(1), default=defaults.max_bytes, help="largest body accepted, bytes")
    parser.add_argument("--max-pixels", type=number_in(1), default=defaults.max_pixels, help="largest image accepted, width × height")
    parser.add_argument("--read-timeout", type=number_in(0.001, kind=float), default=defaults.read_timeout, help="seconds without a byte")
    parser.add_argument("--max-attempts", type=number_in(1), default=defaults.max_attempts, help="tries per URL for connection errors, 429 and 5xx answers")


def download_settings(args: argparse.Namespace) -> DownloadSettings:
    return DownloadSettings(workers=args.workers, max_bytes=args.max_bytes, max_pixels=args.max_pixels, read_timeout=args.read_timeout, max_attempts=args.max_attempts)


def run_twitter(args: argparse.Namespace) -> dict:
    miner = TwitterMiner(args.out, token_env=args.token_env, api_base_url=args.api_base_url, settings=MinerSettings(page_size=args.page_size))
    return miner.run(args.accounts, args.context_account or None)


def run_download(args: argparse.Namespace) -> dict:
    """--table: fill `image_path` (relative to the table's folder) and `download_status` of the table's
    rows from their URL column (--url-column), every other column and row kept. --urls: one URL a line."""
    settings = download_settings(args)
    if args.table:
        table = Path(args.table)
        if table.is_file() and (not os.access(table, os.W_OK) or not table.stat().st_mode & 0o222):  # marked read-only (root may write it anyway)
            raise UserError(f"--table {table}: read-only, and download fills its image_path and download_status columns: "
                            "make it writable (chmod u+w) or pass a copy (nothing was downloaded)")
        urls = read_user_columns(table, (args.url_column,), hint="; name the URL column with --url-column")[args.url_column]
        downloader = Downloader(Path(args.out) if args.out else table.parent / "images", settings)
        rows = {row["url"]: row for row in downloader.fetch_all([url for url in urls if url])}
        files = {url: downloader.file_of(row) for url, row in rows.items()}
        update_user_table(table, {
            "image_path": [relative_to_table(files[url], table) if url and files[url] else None for url in urls],
            "download_status": [rows[url]["status"] if url else "no_url" for url in urls],
        })
        log.info("images in %s; %s updated: image_path and download_status (why a row failed or was rejected: its "
                 "download_status)", downloader.out_dir, table)
    else:
        urls_file = Path(args.urls)
        if not urls_file.is_file():
            raise UserError(f"--urls {urls_file}: no such file (nothing was created)")
        urls = [line.strip() for line in urls_file.read_text().splitlines() if line.strip() and not line.startswith("#")]
        rows = {row["url"]: row for row in Downloader(args.out, settings).fetch_all(urls)}
        log.info("images in %s (each URL's status and reason in %s)", args.out, Path(args.out) / "manifest.parquet")
    return {status: sum(r["status"] == status for r in rows.values()) for status in ("ok", "rejected", "failed")}


def run_arasaac(args: argparse.Namespace) -> dict:
    return fetch_arasaac(args.root, tuple(args.locales), args.resolution, args.api_url, args.static_url, download_settings(args), args.refresh_lists)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROGRAM, description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--verbose", action="store_true", help="debug logs, and the traceback of an error")
    commands = parser.add_subparsers(dest="command", required=True)

    twitter = commands.add_parser("twitter", help="mine meme accounts and their context account (X API v2)", description="Mine meme accounts and their context account (X API v2) into <out>/memes.parquet; incremental and resumable.", formatter_class=HelpFormatter)
    twitter.add_argument("--out", required=True, help="folder of memes.parquet, context.parquet and checkpoints/")
    twitter.add_argument("--accounts", nargs="+", default=["ShitpostBot5000"], help="meme accounts")
    twitter.add_argument("--context-account", default="ShitpostContext", help="account whose tweets give templates and sources ('' for none)")
    twitter.add_argument("--token-env", default=TOKEN_ENV, help="environment variable holding the bearer token")
    twitter.add_argument("--api-base-url", default=None, help="send API requests to this base URL instead (mirror, proxy)")
    twitter.add_argument("--page-size", type=number_in(5, 100), default=100, help="tweets per timeline request (5 to 100)")
    twitter.set_defaults(run=run_twitter)

    download = commands.add_parser("download", help="download images robustly, with a manifest", description="Download images with retries, resume and checks; a manifest.parquet in the target folder lets a re-run skip what is done.", formatter_class=HelpFormatter)
    source = download.add_mutually_exclusive_group(required=True)
    source.add_argument("--table", help="a .parquet or .csv table with a URL column (--url-column): fills image_path (relative to the table) and download_status, keeps every other column")
    source.add_argument("--urls", help="a text file with one URL a line")
    download.add_argument("--url-column", default="image_url", help="with --table: the column that holds the image URLs")
    download.add_argument("--out", help="target folder (default with --table: <table folder>/images)")
    add_download_options(download)
    download.set_defaults(run=run_download)

    arasaac = commands.add_parser("arasaac", help="ARASAAC pictogram lists and PNGs", description="ARASAAC pictogram lists (<root>/<locale>.json) and PNGs (<root>/png/<_id>.png), resumable.", formatter_class=HelpFormatter)
    arasaac.add_argument("--root", required=True, help="folder for the lists, png/ and manifest.parquet")
    arasaac.add_argument("--locales", nargs="+", default=["es", "en"], help="languages of the keyword lists")
    arasaac.add_argument("--resolution", type=int, default=300, choices=RESOLUTIONS, help="PNG size in pixels")
    arasaac.add_argument("--api-url", default=API_URL, help="ARASAAC API base URL")
    arasaac.add_argument("--static-url", default=STATIC_URL, help="base URL of the pictogram PNGs")
    arasaac.add_argument("--refresh-lists", action="store_true", help="fetch the lists again even if saved")
    add_download_options(arasaac)
    arasaac.set_defaults(run=run_arasaac)
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "download" and args.urls and not args.out:
        parser.error("download --urls needs --out")
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("urllib3", "PIL"):  # their DEBUG lines name every connection and PNG chunk
        logging.getLogger(noisy).setLevel(logging.WARNING)
    with reported_as_one_line(PROGRAM, verbose=args.verbose, interrupted="interrupted; what was done is saved: run the same command again to resume"):
        print(json.dumps(args.run(args), indent=2))


if __name__ == "__main__":
    main()
